//! Reliability: everything from outside the program (image folders, files that are not
//! what their name says, checkpoints, specs, options) and faults (divergence, a read-only
//! or full disk; stops from outside are `train_stops.rs`'s) end in a one-line error naming
//! the file, field or layer,
//! or in a reported skip where the design says so: never a panic, a hang, a partial
//! checkpoint or an overwritten run.
//!
//! Every child process runs under a timeout ([`TIMEOUT`]), so a hang fails the test
//! instead of stalling the suite. The tests run as root in CI: where that changes what
//! can be provoked (file permissions), the test says so and asserts what root gets.

mod common;

use common::job::*;
use common::*;
use image::{DynamicImage, ImageFormat};
use petal_model::{load_checkpoint, save_checkpoint, CheckpointMeta, InputShape, Network, Normalization};
use petal_trainer::data::{decode_bytes, load_image_folder, write_chw, LoadReport};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers: processes
// ---------------------------------------------------------------------------------------

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {}",
        path.display()
    );
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------------------
// Helpers: files
// ---------------------------------------------------------------------------------------

fn solid(w: u32, h: u32, rgb: [u8; 3]) -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_pixel(w, h, image::Rgb(rgb)))
}

/// A small image with some structure, so lossy formats have something to compress.
fn pattern(w: u32, h: u32, seed: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 31 + y * 17 + seed * 7) as u8;
        image::Rgb([v, v.wrapping_mul(3), 255 - v])
    }))
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(data);
    let mut crc_in = kind.to_vec();
    crc_in.extend_from_slice(data);
    v.extend_from_slice(&crc32(&crc_in).to_be_bytes());
    v
}

/// A well-formed PNG whose header claims `w` x `h` RGB pixels (with almost no data).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    v.extend(png_chunk(b"IHDR", &ihdr));
    v.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    v.extend(png_chunk(b"IEND", &[]));
    v
}

/// Offset of the first PNG chunk of `kind` (its length field).
fn png_chunk_offset(png: &[u8], kind: &[u8; 4]) -> usize {
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        if &png[at + 4..at + 8] == kind {
            return at;
        }
        at += 12 + len;
    }
    panic!("no {kind:?} chunk");
}

/// A JPEG whose frame header claims `w` x `h`.
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut v = encode(&pattern(16, 16, 1), ImageFormat::Jpeg);
    let sof = v
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("baseline JPEG has SOF0");
    v[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    v[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    v
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn gray(size: usize) -> InputShape {
    InputShape {
        c: 1,
        h: size,
        w: size,
    }
}

fn rgb(size: usize) -> InputShape {
    InputShape {
        c: 3,
        h: size,
        w: size,
    }
}

/// Loads a folder on a worker thread, failing the test if it does not return within
/// [`TIMEOUT`] (a FIFO opened for reading, or `/dev/zero` read to its end, would hang).
fn load_bounded(dir: &Path, shape: InputShape) -> Result<(petal_trainer::data::Dataset, LoadReport), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(load_image_folder(&dir, shape, None).map_err(|e| e.to_string()));
    });
    rx.recv_timeout(TIMEOUT).expect("loading the folder hangs")
}

/// The reason a file was skipped for, or a failure naming what was skipped instead.
fn skip_reason(report: &LoadReport, path: &Path) -> String {
    report
        .skipped
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| {
            panic!(
                "{} was not skipped; skipped: {:?}",
                path.display(),
                report.skipped
            )
        })
}

// ---------------------------------------------------------------------------------------
// Data: folders
// ---------------------------------------------------------------------------------------

#[test]
fn train_bad_data_folders_are_one_line_errors_without_a_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let png = encode(&solid(4, 4, [9, 9, 9]), ImageFormat::Png);
    std::fs::create_dir_all(root.join("empty")).unwrap();
    write(&root.join("one/daisy/a.png"), &png);
    write(&root.join("hollow/daisy/a.png"), &png);
    write(&root.join("hollow/rose/readme.txt"), b"no images here");
    write(&root.join("undecodable/daisy/a.png"), &png);
    write(&root.join("undecodable/rose/a.png"), b"\x89PNG\r\n\x1a\ngarbage");
    write(&root.join("afile"), b"not a folder");
    // Only hidden class folders: ignored, as torchvision does.
    write(&root.join("hidden/.a/x.png"), &png);
    write(&root.join("hidden/.b/x.png"), &png);
    let cases: [(&str, &str); 7] = [
        ("missing", "does not exist"),
        ("empty", "has no class folders"),
        (
            "one",
            "has only one class folder (`daisy`): a classifier needs at least two",
        ),
        ("hollow", "class `rose` has no image files"),
        ("undecodable", "class `rose` has no image that decodes"),
        ("afile", "is not a folder"),
        ("hidden", "has no class folders"),
    ];
    for (name, needle) in cases {
        let data = root.join(name);
        let run_dir = root.join(format!("run-{name}"));
        let mut cmd = trainer();
        cmd.args(["train", "--epochs", "1", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&run_dir);
        let line = error_line(&run(cmd));
        assert!(line.contains(needle), "{name}: `{line}` lacks `{needle}`");
        let named = if name == "hollow" || name == "undecodable" {
            data.join("rose")
        } else {
            data
        };
        assert!(
            line.contains(&format!("data folder {}", named.display())),
            "{name}: `{line}` does not name {}",
            named.display()
        );
        assert!(!run_dir.exists(), "{name}: a failed start leaves no run folder");
    }
    // A validation folder with a class the training folder lacks.
    write(&root.join("train/a/x.png"), &png);
    write(&root.join("train/b/x.png"), &png);
    write(&root.join("val/a/x.png"), &png);
    write(&root.join("val/c/x.png"), &png);
    let mut cmd = trainer();
    cmd.args([
        "train", "--epochs", "1", "--arch", "dense:2", "--size", "4", "--data",
    ])
    .arg(root.join("train"))
    .arg("--val")
    .arg(root.join("val"))
    .arg("--out")
    .arg(root.join("run-val"));
    let line = error_line(&run(cmd));
    assert!(
        line.contains("has class folders that the training folder") && line.contains("lacks: [\"c\"]"),
        "{line}"
    );
}

#[test]
fn data_class_folders_that_read_the_same_as_utf8_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let png = encode(&solid(4, 4, [9, 9, 9]), ImageFormat::Png);
    // b"a\xff" and b"a\xfe" both read as "a\u{FFFD}": one label for two folders.
    for name in [&b"a\xff"[..], b"a\xfe"] {
        write(&dir.path().join(OsStr::from_bytes(name)).join("x.png"), &png);
    }
    let e = load_image_folder(dir.path(), gray(4), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("have the same name `a\u{FFFD}` once read as UTF-8"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// Data: files
// ---------------------------------------------------------------------------------------

#[test]
fn train_files_that_do_not_decode_are_reported_with_their_path_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let a = root.join("a");
    write(
        &a.join("good.png"),
        &encode(&solid(8, 8, [200, 10, 10]), ImageFormat::Png),
    );
    write(
        &root.join("b/good.png"),
        &encode(&solid(8, 8, [10, 10, 200]), ImageFormat::Png),
    );

    let jpeg = encode(&pattern(32, 32, 3), ImageFormat::Jpeg);
    let png = encode(&pattern(16, 16, 4), ImageFormat::Png);
    let mut bad_idat_crc = png.clone();
    let idat = png_chunk_offset(&png, b"IDAT");
    let len = u32::from_be_bytes(png[idat..idat + 4].try_into().unwrap()) as usize;
    bad_idat_crc[idat + 8 + len] ^= 0xFF;
    let mut bad_ihdr_crc = png.clone();
    bad_ihdr_crc[8 + 8 + 13] ^= 0xFF;
    let mut bmp_huge = encode(&solid(4, 4, [1, 2, 3]), ImageFormat::Bmp);
    bmp_huge[18..22].copy_from_slice(&30_000i32.to_le_bytes());
    bmp_huge[22..26].copy_from_slice(&30_000i32.to_le_bytes());
    let mut gif_huge = encode(&solid(4, 4, [1, 2, 3]), ImageFormat::Gif);
    gif_huge[6..8].copy_from_slice(&30_000u16.to_le_bytes());
    gif_huge[8..10].copy_from_slice(&30_000u16.to_le_bytes());

    // (file, bytes, what the reason says)
    let files: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("zero-bytes.png", Vec::new(), &["empty file"]),
        (
            "text.jpg",
            b"just some text, not a JPEG\n".to_vec(),
            &["not an image"],
        ),
        (
            "truncated.jpg",
            jpeg[..jpeg.len() / 2].to_vec(),
            &["truncated JPEG"],
        ),
        (
            "cut-before-eoi.jpg",
            jpeg[..jpeg.len() - 2].to_vec(),
            &["truncated JPEG"],
        ),
        ("truncated.png", png[..png.len() - 20].to_vec(), &[]),
        ("bad-idat-crc.png", bad_idat_crc, &["crc", "checksum"]),
        ("bad-ihdr-crc.png", bad_ihdr_crc, &["crc", "checksum"]),
        ("huge-20000.png", png_claiming(20_000, 20_000), &["limit"]),
        ("huge-wide.png", png_claiming(1 << 20, 1), &["limit"]),
        ("huge-65535.jpg", jpeg_claiming(65_535, 65_535), &["limit"]),
        ("huge.bmp", bmp_huge, &["limit"]),
        ("huge.gif", gif_huge, &["limit"]),
    ];
    for (name, bytes, _) in &files {
        write(&a.join(name), bytes);
    }
    // Files that are not regular files: each would hang or stream forever if opened.
    mkfifo(&a.join("fifo.png"));
    std::os::unix::fs::symlink("/dev/zero", a.join("dev-zero.png")).unwrap();
    std::os::unix::fs::symlink(a.join("nowhere.png"), a.join("dangling.png")).unwrap();
    std::os::unix::fs::symlink(a.join("loop.png"), a.join("loop.png")).unwrap();
    // A folder named like an image is a folder (walked, empty), not a file.
    std::fs::create_dir_all(a.join("folder.jpg")).unwrap();
    let special: [(&str, &[&str]); 4] = [
        ("fifo.png", &["not a regular file"]),
        ("dev-zero.png", &["not a regular file"]),
        ("dangling.png", &["No such file"]),
        ("loop.png", &["symbolic links"]),
    ];

    let t0 = Instant::now();
    let (data, report) = load_bounded(&root, gray(8)).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(
        data.len(),
        2,
        "only the good files load: {:?} {:?}",
        data.paths,
        report.skipped
    );
    assert_eq!(data.classes, ["a", "b"]);
    assert_eq!(
        report.skipped.len(),
        files.len() + special.len(),
        "{:?}",
        report.skipped
    );
    let expected = files.iter().map(|(n, _, r)| (*n, *r)).chain(special);
    for (name, needles) in expected {
        let reason = skip_reason(&report, &a.join(name));
        assert!(!reason.is_empty(), "{name}");
        assert!(
            needles.is_empty()
                || needles
                    .iter()
                    .any(|n| reason.to_lowercase().contains(&n.to_lowercase())),
            "{name}: reason `{reason}` lacks {needles:?}"
        );
    }

    // Through the binary: one `skipped PATH: reason` line per file, the count in the
    // summary, and the run goes on with what loads.
    let mut cmd = trainer();
    cmd.args([
        "train",
        "--epochs",
        "1",
        "--arch",
        "dense:2",
        "--size",
        "8",
        "--val-split",
        "0",
    ])
    .arg("--data")
    .arg(&root)
    .arg("--out")
    .arg(dir.path().join("run"));
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for (name, ..) in &files {
        let line = format!("skipped {}: ", a.join(name).display());
        assert!(err.contains(&line), "no `{line}` in {err}");
    }
    for (name, _) in special {
        assert!(
            err.contains(&format!("skipped {}: ", a.join(name).display())),
            "{name}: {err}"
        );
    }
    let summary = format!(
        "2 images in 2 classes (a 1, b 1), {} skipped",
        files.len() + special.len()
    );
    assert!(stdout(&out).contains(&summary), "{}", stdout(&out));
}

#[test]
fn data_unusual_but_valid_images_load() {
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
    let red16 = ImageBuffer::from_pixel(5, 3, Rgb([65535u16, 0, 0]));
    let cases: Vec<(&str, Vec<u8>, [f32; 3])> = vec![
        (
            "gray16.png",
            encode(
                &DynamicImage::ImageLuma16(ImageBuffer::from_pixel(6, 4, Luma([32768u16]))),
                ImageFormat::Png,
            ),
            [0.5, 0.5, 0.5],
        ),
        (
            "rgb16.png",
            encode(&DynamicImage::ImageRgb16(red16), ImageFormat::Png),
            [1.0, 0.0, 0.0],
        ),
        (
            "rgba16.png",
            encode(
                &DynamicImage::ImageRgba16(ImageBuffer::from_pixel(3, 3, Rgba([0u16, 65535, 0, 65535]))),
                ImageFormat::Png,
            ),
            [0.0, 1.0, 0.0],
        ),
        (
            "rgba.png",
            encode(
                &DynamicImage::ImageRgba8(ImageBuffer::from_pixel(7, 2, Rgba([0u8, 0, 255, 128]))),
                ImageFormat::Png,
            ),
            [0.0, 0.0, 1.0],
        ),
        (
            "gray-alpha.png",
            encode(
                &DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(4, 4, LumaA([255u8, 10]))),
                ImageFormat::Png,
            ),
            [1.0, 1.0, 1.0],
        ),
        (
            "gray.jpg",
            encode(
                &DynamicImage::ImageLuma8(ImageBuffer::from_pixel(16, 16, Luma([255u8]))),
                ImageFormat::Jpeg,
            ),
            [1.0, 1.0, 1.0],
        ),
        (
            "one-pixel.png",
            encode(&solid(1, 1, [255, 255, 0]), ImageFormat::Png),
            [1.0, 1.0, 0.0],
        ),
        (
            "one-pixel.bmp",
            encode(&solid(1, 1, [0, 255, 255]), ImageFormat::Bmp),
            [0.0, 1.0, 1.0],
        ),
        (
            "solid.gif",
            encode(&solid(5, 5, [255, 0, 255]), ImageFormat::Gif),
            [1.0, 0.0, 1.0],
        ),
        (
            "solid.webp",
            encode(&solid(5, 5, [0, 0, 255]), ImageFormat::WebP),
            [0.0, 0.0, 1.0],
        ),
        (
            "solid.tiff",
            encode(&solid(5, 5, [255, 0, 0]), ImageFormat::Tiff),
            [1.0, 0.0, 0.0],
        ),
        (
            "solid.jpg",
            encode(&solid(16, 16, [255, 255, 255]), ImageFormat::Jpeg),
            [1.0, 1.0, 1.0],
        ),
    ];
    for (name, bytes, want) in &cases {
        let img = decode_bytes(bytes).unwrap_or_else(|e| panic!("{name} does not decode: {e}"));
        let mut out = vec![f32::NAN; 3 * 4 * 4];
        write_chw(&img, rgb(4), &mut out);
        for (c, plane) in out.chunks(16).enumerate() {
            for &v in plane {
                assert!(
                    (v - want[c]).abs() < 0.02,
                    "{name}: channel {c} is {v}, expected {}",
                    want[c]
                );
            }
        }
        let mut g = vec![f32::NAN; 9];
        write_chw(&img, gray(3), &mut g);
        assert!(g.iter().all(|v| (0.0..=1.0).contains(v)), "{name}: {g:?}");
    }

    // A palette PNG (rows red, green, blue, white) and a CMYK JPEG (left half red, right
    // half blue), made with Pillow: the image encoder here writes neither.
    let img = decode_bytes(&fixture("palette.png")).expect("palette PNG decodes");
    let mut out = vec![0.0; 3 * 16];
    write_chw(&img, rgb(4), &mut out);
    let px = |out: &[f32], plane: usize, y: usize, x: usize, w: usize| -> [f32; 3] {
        [0, 1, 2].map(|c| out[c * plane + y * w + x])
    };
    assert_eq!(px(&out, 16, 0, 2, 4), [1.0, 0.0, 0.0]);
    assert_eq!(px(&out, 16, 1, 2, 4), [0.0, 1.0, 0.0]);
    assert_eq!(px(&out, 16, 2, 2, 4), [0.0, 0.0, 1.0]);
    assert_eq!(px(&out, 16, 3, 2, 4), [1.0, 1.0, 1.0]);
    let img = decode_bytes(&fixture("cmyk.jpg")).expect("CMYK JPEG decodes");
    assert_eq!((img.width(), img.height()), (8, 8));
    let mut out = vec![0.0; 3 * 64];
    write_chw(&img, rgb(8), &mut out);
    let close = |a: [f32; 3], b: [f32; 3]| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 0.1);
    assert!(
        close(px(&out, 64, 4, 1, 8), [1.0, 0.0, 0.0]),
        "{:?}",
        px(&out, 64, 4, 1, 8)
    );
    assert!(
        close(px(&out, 64, 4, 6, 8), [0.0, 0.0, 1.0]),
        "{:?}",
        px(&out, 64, 4, 6, 8)
    );

    // All of them as a folder: nothing skipped.
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, _) in &cases {
        write(&dir.path().join("x").join(name), bytes);
    }
    write(&dir.path().join("y/palette.png"), &fixture("palette.png"));
    write(&dir.path().join("y/cmyk.jpg"), &fixture("cmyk.jpg"));
    for shape in [gray(8), rgb(8)] {
        let (data, report) = load_bounded(dir.path(), shape).unwrap();
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        assert_eq!(data.len(), cases.len() + 2);
    }
}

#[test]
fn data_an_unreadable_file_is_skipped_or_as_root_read() {
    let dir = tempfile::tempdir().unwrap();
    let png = encode(&solid(4, 4, [9, 9, 9]), ImageFormat::Png);
    write(&dir.path().join("a/ok.png"), &png);
    write(&dir.path().join("b/ok.png"), &png);
    let locked = dir.path().join("a/locked.png");
    write(&locked, &png);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable = std::fs::File::open(&locked).is_ok();
    let (data, report) = load_bounded(dir.path(), gray(4)).unwrap();
    if readable {
        // Root (CI) reads a mode-000 file: permissions cannot make it unreadable here, so
        // the honest outcome is that it loads. The FIFO, /dev/zero, dangling and looping
        // links of `train_files_that_do_not_decode_...` are the unreadable files root gets.
        assert!(is_root(), "a mode-000 file is readable, yet we are not root");
        assert_eq!(data.len(), 3);
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    } else {
        assert_eq!(data.len(), 2);
        let reason = skip_reason(&report, &locked);
        assert!(reason.contains("Permission denied"), "{reason}");
    }
}

#[test]
fn data_symlink_loops_are_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let png = encode(&solid(4, 4, [9, 9, 9]), ImageFormat::Png);
    write(&root.join("a/1.png"), &png);
    write(&root.join("a/sub/2.png"), &png);
    write(&root.join("b/3.png"), &png);
    // a/self -> a, a/sub/back -> a: loops; b/link -> a/sub: the same files twice.
    std::os::unix::fs::symlink(root.join("a"), root.join("a/self")).unwrap();
    std::os::unix::fs::symlink(root.join("a"), root.join("a/sub/back")).unwrap();
    std::os::unix::fs::symlink("../b", root.join("b/up")).unwrap();
    // A class folder that is a link loop is not a folder: ignored.
    std::os::unix::fs::symlink(root.join("c"), root.join("c")).unwrap();
    let (data, report) = load_bounded(root, gray(4)).unwrap();
    assert_eq!(data.classes, ["a", "b"]);
    assert_eq!(data.class_counts(), [2, 1]);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
}

#[test]
fn train_eval_paths_with_spaces_and_non_utf8_bytes_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir
        .path()
        .join(OsStr::from_bytes(b"my data \xf0\x28 \xe2\x9c\xbf"));
    let odd = OsStr::from_bytes(b"ros\xe9 bud");
    for (class, v) in [(OsStr::new("da isy"), 40u8), (odd, 220)] {
        for i in 0..6u8 {
            let name = [b"img \xff".as_slice(), &[b'0' + i], b".png"].concat();
            write(
                &root.join(class).join(OsStr::from_bytes(&name)),
                &encode(&solid(6, 6, [v + i, v, v]), ImageFormat::Png),
            );
        }
    }
    let broken = root.join("da isy").join(OsStr::from_bytes(b"broken \xfe.png"));
    write(&broken, b"not a png");
    let run_dir = dir.path().join(OsStr::from_bytes(b"run \xc3\x28 \xe2\x9c\xbf"));
    let mut cmd = trainer();
    cmd.args([
        "train",
        "--epochs",
        "2",
        "--arch",
        "dense:2",
        "--size",
        "6",
        "--grayscale",
        "--lr",
        "0.5",
    ])
    .arg("--data")
    .arg(&root)
    .arg("--out")
    .arg(&run_dir);
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("skipped {}: ", broken.display())),
        "{}",
        stderr(&out)
    );
    let (_, meta) = load_checkpoint(&run_dir.join("model.safetensors")).unwrap();
    assert_eq!(meta.classes, ["da isy", "ros\u{FFFD} bud"]);
    // config.json keeps the data path's bytes, so the run resumes.
    let out = run({
        let mut c = resume(&run_dir);
        c.args(["--epochs", "3"]);
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(metrics(&run_dir).len(), 3);
    let mut cmd = trainer();
    cmd.args(["eval", "--json", "--checkpoint"])
        .arg(run_dir.join("model.safetensors"))
        .arg("--data")
        .arg(&root);
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["images"], 12);
    assert_eq!(v["classes"], serde_json::json!(["da isy", "ros\u{FFFD} bud"]));
    assert!(v["data"].as_str().unwrap().contains("my data \u{FFFD}( ✿"), "{v}");
    let skipped = v["skipped"][0]["path"].as_str().unwrap();
    assert!(skipped.contains("broken"), "{skipped}");
}

#[test]
fn eval_thousands_of_files_per_class_load_in_bounded_memory() {
    const PER_CLASS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    // 128x128 RGB images (48 KiB decoded each, 192 MiB for all 4000; files of a few
    // hundred bytes) into 3x8x8 inputs (768 bytes each, 3 MiB in all): memory must follow
    // the inputs, not the images. The loader runs in about 10 MiB of data segment; the
    // test allows 40.
    let variants: Vec<Vec<Vec<u8>>> = (0..2u8)
        .map(|c| {
            (0..4u8)
                .map(|i| {
                    let mut img = image::RgbImage::from_pixel(128, 128, image::Rgb([40 + 100 * c, 9, 9]));
                    img.put_pixel(i as u32, 5, image::Rgb([255, 255, 255]));
                    encode(&DynamicImage::ImageRgb8(img), ImageFormat::Png)
                })
                .collect()
        })
        .collect();
    for (c, class) in ["a", "b"].iter().enumerate() {
        let d = root.join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..PER_CLASS {
            std::fs::write(d.join(format!("{i:05}.png")), &variants[c][i % 4]).unwrap();
        }
    }
    let ckpt = dir.path().join("m.safetensors");
    let net = Network::from_spec("conv3x3:4,dense:2", rgb(8), 1).unwrap();
    let meta = CheckpointMeta {
        classes: vec!["a".into(), "b".into()],
        normalization: Normalization::unit(3),
        epoch: 0,
        step: 0,
        extra: Default::default(),
    };
    save_checkpoint(&ckpt, &net, &meta).unwrap();
    // `trainer eval` with its data segment (heap, thread stacks: every private writable
    // mapping) capped by RLIMIT_DATA; an allocation past the cap fails and aborts.
    let eval = |limit_mib: u64| {
        let mut cmd = trainer();
        cmd.args(["eval", "--json", "--checkpoint"])
            .arg(&ckpt)
            .arg("--data")
            .arg(&root)
            .env("RAYON_NUM_THREADS", "2");
        let limit = limit_mib << 20;
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                let r = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_DATA, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        run(cmd)
    };
    let t0 = Instant::now();
    let out = eval(40);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["images"], 2 * PER_CLASS);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 0);
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    // The cap is real: far below what the binary needs, the same command fails.
    let out = eval(2);
    assert!(
        !out.status.success(),
        "2 MiB cannot be enough: the limit does not apply"
    );
}

// ---------------------------------------------------------------------------------------
// Checkpoints, specs and options through the binary
// ---------------------------------------------------------------------------------------

/// A small valid checkpoint (1x6x6 grayscale, classes a and b) and an image for it.
fn small_checkpoint(dir: &Path) -> (PathBuf, PathBuf) {
    let ckpt = dir.join("good.safetensors");
    let net = Network::from_spec("conv3x3:2,maxpool2,dense:2", gray(6), 1).unwrap();
    let meta = CheckpointMeta {
        classes: vec!["a".into(), "b".into()],
        normalization: Normalization::unit(1),
        epoch: 1,
        step: 1,
        extra: Default::default(),
    };
    save_checkpoint(&ckpt, &net, &meta).unwrap();
    let img = dir.join("img.png");
    write(&img, &encode(&solid(6, 6, [9, 99, 199]), ImageFormat::Png));
    write(
        &dir.join("data/a/x.png"),
        &encode(&solid(6, 6, [0, 0, 0]), ImageFormat::Png),
    );
    write(
        &dir.join("data/b/x.png"),
        &encode(&solid(6, 6, [255, 255, 255]), ImageFormat::Png),
    );
    (ckpt, img)
}

/// Rewrites the safetensors header of `bytes` through `f` (tensor data kept).
fn with_header(bytes: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    f(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn eval_predict_bad_checkpoints_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (good, img) = small_checkpoint(d);
    let bytes = std::fs::read(&good).unwrap();
    let meta = |key: &'static str, value: &'static str| {
        with_header(&bytes, move |h| h["__metadata__"][key] = value.into())
    };
    let mut noise = vec![0u8; 3000];
    let mut x = 0x9E37_79B9u32;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let mut huge_header = u64::MAX.to_le_bytes().to_vec();
    huge_header.extend_from_slice(b"{}");
    let mut nan = bytes.clone();
    let end = nan.len();
    nan[end - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    let files: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.safetensors", Vec::new(), "not a safetensors file"),
        (
            "truncated.safetensors",
            bytes[..bytes.len() - 7].to_vec(),
            "safetensors",
        ),
        ("header-only.safetensors", bytes[..40].to_vec(), "safetensors"),
        ("noise.safetensors", noise, "safetensors"),
        ("huge-header.safetensors", huge_header, "safetensors"),
        (
            "offsets.safetensors",
            with_header(&bytes, |h| {
                h["0.weight"]["data_offsets"] = serde_json::json!([0, 1u64 << 40])
            }),
            "safetensors",
        ),
        (
            "f64.safetensors",
            with_header(&bytes, |h| {
                // Two f32 values are the bytes of one f64.
                h["0.bias"]["dtype"] = "F64".into();
                h["0.bias"]["shape"] = serde_json::json!([1]);
            }),
            "tensor `0.bias` is F64, expected F32",
        ),
        (
            "i32.safetensors",
            with_header(&bytes, |h| h["0.bias"]["dtype"] = "I32".into()),
            "tensor `0.bias` is I32, expected F32",
        ),
        (
            "missing-tensor.safetensors",
            with_header(&bytes, |h| {
                let t = h.as_object_mut().unwrap().remove("3.bias").unwrap();
                h["9.bias"] = t;
            }),
            "tensor `3.bias` is missing",
        ),
        (
            "typo-spec.safetensors",
            meta("spec", "conv3x3:2,maxpol2,dense:2"),
            "spec layer 2 (`maxpol2`)",
        ),
        (
            "other-arch.safetensors",
            meta("spec", "conv3x3:4,maxpool2,dense:2"),
            "tensor `0.weight` has shape",
        ),
        (
            "zero-input.safetensors",
            meta("input_shape", "[1,0,6]"),
            "input shape 1x0x6",
        ),
        (
            "huge-input.safetensors",
            meta("input_shape", "[1,1099511627776,1099511627776]"),
            "network too large: the input 1x1099511627776x1099511627776",
        ),
        (
            "bad-classes.safetensors",
            meta("classes", "[\"a\"]"),
            "1 class names for a network with 2 outputs",
        ),
        (
            "zero-std.safetensors",
            meta("normalization", r#"{"scale":0.0039,"mean":[0.0],"std":[0.0]}"#),
            "metadata `normalization`",
        ),
        ("nan-weight.safetensors", nan, "holds NaN"),
        ("image.safetensors", std::fs::read(&img).unwrap(), "safetensors"),
    ];
    let mut paths: Vec<(PathBuf, &str)> = Vec::new();
    for (name, b, needle) in &files {
        let p = d.join(name);
        write(&p, b);
        paths.push((p, needle));
    }
    mkfifo(&d.join("fifo.safetensors"));
    std::os::unix::fs::symlink("/dev/zero", d.join("zero.safetensors")).unwrap();
    std::os::unix::fs::symlink(d.join("loop.safetensors"), d.join("loop.safetensors")).unwrap();
    // Larger than any network: refused by its size, without reading it (a sparse file).
    let big = std::fs::File::create(d.join("big.safetensors")).unwrap();
    big.set_len(petal_model::checkpoint::MAX_FILE_BYTES + 1).unwrap();
    for (name, needle) in [
        ("fifo.safetensors", "not a regular file"),
        ("zero.safetensors", "not a regular file"),
        (
            "loop.safetensors",
            "cannot read: Too many levels of symbolic links",
        ),
        ("nope.safetensors", "cannot read: No such file"),
        ("data", "not a regular file (a folder)"),
        ("big.safetensors", "larger than any Petal network"),
    ] {
        paths.push((d.join(name), needle));
    }
    // The unmodified checkpoint works, so each case fails for its own reason.
    let mut cmd = trainer();
    cmd.args(["predict", "--checkpoint"]).arg(&good).arg(&img);
    assert!(run(cmd).status.success());
    for (path, needle) in &paths {
        for command in ["eval", "predict"] {
            let mut cmd = trainer();
            cmd.args([command, "--checkpoint"]).arg(path);
            if command == "eval" {
                cmd.arg("--data").arg(d.join("data"));
            } else {
                cmd.arg(&img);
            }
            let out = run(cmd);
            let line = error_line(&out);
            assert_eq!(stderr_lines(&out).len(), 1, "{}", stderr(&out));
            let prefix = format!("error: checkpoint {}: ", path.display());
            assert!(
                line.starts_with(&prefix),
                "{command}: `{line}` does not start with `{prefix}`"
            );
            assert!(line.contains(needle), "{command}: `{line}` lacks `{needle}`");
        }
    }
}

#[test]
fn train_bench_gradcheck_synth_refuse_bad_specs_and_options_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--arch", "conv3x3:8,maxpol2,dense:5"],
            "spec layer 2 (`maxpol2`): unknown layer",
        ),
        (
            vec!["--arch", "conv3x3:8,maxpool2,dense:0"],
            "spec layer 3 (`dense:0`): outputs must be at least 1",
        ),
        (
            vec!["--arch", "conv0x3:8,dense:5"],
            "kernel height must be at least 1",
        ),
        (
            vec!["--arch", "conv3x3:8/p,dense:5"],
            "padding `` is not a whole number",
        ),
        (
            vec!["--arch", "conv3x3:99999999999999999999999,dense:5"],
            "is not a whole number",
        ),
        (vec!["--arch", "conv3x3:-8,dense:5"], "is not a whole number"),
        (
            vec!["--arch", "conv3x3:8,maxpool99,dense:5"],
            "spec layer 2 (`maxpool99`): does not fit",
        ),
        (vec!["--arch", "dense:1000000,dense:1000000"], "network too large"),
        (
            vec!["--arch", "conv63x63:1/s2/p31,dense:2", "--size", "4096", "--rgb"],
            "the convolution scratch of one sample",
        ),
        (vec!["--size", "0"], "input shape 1x0x0"),
        // Found by fuzzing (fuzz/corpus/spec): a network of only flattens computes nothing.
        (
            vec!["--arch", "flatten", "--size", "8"],
            "needs at least one layer that computes",
        ),
        // synth::draw panics below 8 pixels: refused first.
        (
            vec!["--size", "4"],
            "synthetic flowers are drawn at --size 8 to 4096, not 4",
        ),
        (
            vec!["--size", "100000"],
            "--size 100000 is over the limit of 16384 pixels",
        ),
        (vec!["--lr", "NaN"], "--lr NaN must be a finite number"),
        (vec!["--lr=-0.1"], "--lr -0.1 must be a finite number, at least 0"),
        (
            vec!["--momentum", "inf"],
            "--momentum inf must be a finite number",
        ),
        (
            vec!["--batch-size", "0"],
            "--batch-size and --epochs must be at least 1",
        ),
        (vec!["--val-split", "1.5"], "--val-split 1.5 is not in [0, 1)"),
        (
            vec!["--synth-per-class", "4000000000000000"],
            "do not fit in memory",
        ),
    ];
    for (args, needle) in cases {
        let run_dir = dir.path().join("run");
        let mut cmd = trainer();
        cmd.arg("train").args(&args).arg("--out").arg(&run_dir);
        let t0 = Instant::now();
        let line = error_line(&run(cmd));
        assert!(line.contains(needle), "{args:?}: `{line}` lacks `{needle}`");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}",
            t0.elapsed()
        );
        assert!(!run_dir.exists(), "{args:?}: no run folder");
    }
    for (args, needle) in [
        (
            vec![
                "bench",
                "--arch",
                "conv63x63:1/s2/p31,dense:2",
                "--size",
                "4096",
                "--rgb",
            ],
            "convolution scratch",
        ),
        (
            vec!["gradcheck", "--arch", "conv3x3:4,dense:3", "--size", "99999"],
            "over the limit",
        ),
        (
            vec!["synth", "--size", "1000000", "--out", "x"],
            "--size must be between 8 and 4096",
        ),
        (
            vec!["bench", "--batch-size", "4,1000000000000"],
            "--batch-size 1000000000000 is over the limit",
        ),
        (
            vec!["gradcheck", "--batch-size", "1000000000000"],
            "--batch-size must be between 1 and 65536",
        ),
    ] {
        let line = error_line(&run({
            let mut c = trainer();
            c.args(&args).current_dir(dir.path());
            c
        }));
        assert!(line.contains(needle), "{args:?}: `{line}` lacks `{needle}`");
    }
}

#[test]
fn train_bad_run_folders_do_not_resume_and_are_left_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let mut cmd = trainer();
    cmd.args([
        "train",
        "--synth-per-class",
        "20",
        "--size",
        "20",
        "--epochs",
        "1",
        "--out",
    ])
    .arg(&good);
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let step = load_checkpoint(&good.join("model.safetensors")).unwrap().1.step;
    let opt = format!("optimizer-step{step}.safetensors");
    let copy = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in listing(&good) {
            std::fs::copy(good.join(&f), d.join(&f)).unwrap();
        }
        d
    };
    type Spoil = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Spoil, String)> = vec![
        (
            "no-config",
            Box::new(|d: &Path| std::fs::remove_file(d.join("config.json")).unwrap()),
            "config.json: No such file".into(),
        ),
        (
            "bad-config",
            Box::new(|d: &Path| std::fs::write(d.join("config.json"), b"{\"arch\": 5}").unwrap()),
            "config.json: not a run configuration".into(),
        ),
        (
            "truncated-model",
            Box::new(|d: &Path| {
                let b = std::fs::read(d.join("model.safetensors")).unwrap();
                std::fs::write(d.join("model.safetensors"), &b[..b.len() / 2]).unwrap();
            }),
            "model.safetensors: not a safetensors file".into(),
        ),
        (
            "no-optimizer",
            Box::new(move |d: &Path| std::fs::remove_file(d.join(optimizer_name(d))).unwrap()),
            "cannot read: No such file".into(),
        ),
        (
            "bad-metrics",
            Box::new(|d: &Path| std::fs::write(d.join("metrics.jsonl"), b"{\"epoch\": 1}\n").unwrap()),
            "metrics.jsonl: line 1".into(),
        ),
        (
            "other-arch",
            Box::new(|d: &Path| {
                let p = d.join("config.json");
                let t = std::fs::read_to_string(&p)
                    .unwrap()
                    .replace("seednet", "conv3x3:4,maxpool2,dense:5")
                    .replace("conv3x3:8,maxpool2,flatten", "conv3x3:4,maxpool2,flatten");
                std::fs::write(p, t).unwrap();
            }),
            "but config.json asks for `conv3x3:4,maxpool2,flatten,dense:5`".into(),
        ),
        (
            "arch-and-spec-disagree",
            Box::new(|d: &Path| {
                let p = d.join("config.json");
                let t = std::fs::read_to_string(&p)
                    .unwrap()
                    .replace("seednet", "conv3x3:4,maxpool2,dense:5");
                std::fs::write(p, t).unwrap();
            }),
            "config.json: `arch` \"conv3x3:4,maxpool2,dense:5\" gives `conv3x3:4,maxpool2,flatten,dense:5` for 5 classes, but `spec` is `conv3x3:8,maxpool2,flatten,dense:5`".into(),
        ),
        (
            "config-without-spec",
            Box::new(|d: &Path| {
                // A run made before config.json recorded the spec resumes from its arch.
                let p = d.join("config.json");
                let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                v.as_object_mut().unwrap().remove("spec");
                v["arch"] = "conv3x3:4,maxpool2,dense:5".into();
                std::fs::write(p, v.to_string()).unwrap();
            }),
            "but config.json asks for `conv3x3:4,maxpool2,flatten,dense:5`".into(),
        ),
    ];
    for (name, spoil, needle) in cases {
        let d = copy(name);
        spoil(&d);
        let before: Vec<(String, Vec<u8>)> = listing(&d)
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(d.join(&f)).unwrap()))
            .collect();
        let mut cmd = resume(&d);
        cmd.args(["--epochs", "2"]);
        let line = error_line(&run(cmd));
        assert!(line.contains(&needle), "{name}: `{line}` lacks `{needle}`");
        if name == "no-optimizer" {
            assert!(
                line.contains(&format!("checkpoint {}: ", d.join(&opt).display())),
                "{line}"
            );
        }
        let after: Vec<(String, Vec<u8>)> = listing(&d)
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(d.join(&f)).unwrap()))
            .collect();
        assert!(before == after, "{name}: the run folder changed");
    }
}

fn optimizer_name(run: &Path) -> String {
    listing(run)
        .into_iter()
        .find(|n| n.starts_with("optimizer-step"))
        .expect("an optimizer file")
}

// ---------------------------------------------------------------------------------------
// Faults: divergence
// ---------------------------------------------------------------------------------------

#[test]
fn train_divergence_in_epoch_1_stops_with_no_checkpoint_and_only_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let line = error_line(&run(quick_job(&run_dir, &["--epochs", "2", "--lr", "1e9"])));
    assert!(line.contains("training diverged at epoch 1, step "), "{line}");
    assert!(
        line.contains("the loss is NaN") || line.contains("the loss is inf"),
        "{line}"
    );
    assert!(
        line.contains(&format!("no checkpoint was written to {}", run_dir.display())),
        "{line}"
    );
    assert_eq!(listing(&run_dir), ["config.json"]);
}

#[test]
fn train_divergence_in_epoch_2_leaves_the_epoch_1_checkpoint_as_it_was() {
    // `--resume` reads the options from config.json: one good epoch, then the run's
    // learning rate raised there to 1e9, so the same run diverges in its second epoch.
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let out = run(quick_job(&run_dir, &["--epochs", "1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let files = [
        "model.safetensors",
        "optimizer-step5.safetensors",
        "metrics.jsonl",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(run_dir.join(f)).unwrap())
        .collect();
    let config = run_dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    cfg["lr"] = 1e9.into();
    cfg["epochs"] = 2.into();
    std::fs::write(&config, serde_json::to_string(&cfg).unwrap()).unwrap();

    let line = error_line(&run(resume(&run_dir)));
    // Step 6 (the first of epoch 2) starts from the good weights; a later step overflows.
    let step: u64 = line
        .split("step ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no step in `{line}`"));
    assert!(line.contains("training diverged at epoch 2, step "), "{line}");
    assert!((7..=10).contains(&step), "{line}");
    assert!(
        line.contains(&format!(
            "the last good checkpoint (epoch 1, step 5) is in {}, unchanged",
            run_dir.display()
        )),
        "{line}"
    );
    for (f, b) in files.iter().zip(&before) {
        assert!(std::fs::read(run_dir.join(f)).unwrap() == *b, "{f} changed");
    }
    assert_eq!(assert_consistent(&run_dir), (1, 5));
}

#[test]
fn train_weights_that_overflow_in_a_finite_step_are_not_checkpointed() {
    // One step an epoch (batch 128 > 80 images): the step's loss is computed before its
    // update, so it is finite; the update (lr and weight decay near f32::MAX) overflows the
    // weights, and the epoch-end check refuses to checkpoint them.
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let out = run(quick_job(
        &run_dir,
        &[
            "--epochs",
            "2",
            "--batch-size",
            "128",
            "--lr",
            "1e38",
            "--weight-decay",
            "1e38",
        ],
    ));
    let line = error_line(&out);
    assert!(
        line.contains("training diverged at epoch 1, step 1: tensor `"),
        "{line}"
    );
    assert!(line.contains("is no longer finite"), "{line}");
    assert!(line.contains("no checkpoint was written"), "{line}");
    assert_eq!(listing(&run_dir), ["config.json"]);
}

// ---------------------------------------------------------------------------------------
// Faults: read-only and full disks
// ---------------------------------------------------------------------------------------

/// A mount made by a test, detached when dropped (also when the test fails).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.0.as_os_str().as_bytes()).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn cstr(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Mounts a tmpfs of `size` (e.g. `4m`) on `dir`, or says why it cannot.
fn mount_tmpfs(dir: &Path, size: &str) -> Result<Mount, std::io::Error> {
    let data = std::ffi::CString::new(format!("size={size}")).unwrap();
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            cstr(dir).as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Mount(dir.to_path_buf()))
}

/// Makes `dir` read-only in place (a read-only bind mount of itself), or says why not.
fn mount_read_only(dir: &Path) -> Result<Mount, std::io::Error> {
    let p = cstr(dir);
    let none = std::ptr::null();
    if unsafe { libc::mount(p.as_ptr(), p.as_ptr(), none, libc::MS_BIND, none.cast()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let m = Mount(dir.to_path_buf());
    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
    if unsafe { libc::mount(none, p.as_ptr(), none, flags, none.cast()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(m)
}

/// Contents of every file in a folder.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    listing(dir)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(dir.join(&f)).unwrap()))
        .collect()
}

/// Asserts the files of `before` (a snapshot) are unchanged in `run_dir`, but for
/// `metrics.jsonl` (rewritten as it was) and `config.json`, which records the `--epochs`
/// the resume raised to `epochs` (and nothing else).
fn assert_unchanged_but_the_epochs(run_dir: &Path, before: &[(String, Vec<u8>)], epochs: usize) {
    for (name, bytes) in before {
        let now = std::fs::read(run_dir.join(name)).unwrap();
        match name.as_str() {
            "metrics.jsonl" => {}
            "config.json" => {
                let (mut was, now): (serde_json::Value, serde_json::Value) = (
                    serde_json::from_slice(bytes).unwrap(),
                    serde_json::from_slice(&now).unwrap(),
                );
                was["epochs"] = epochs.into();
                assert_eq!(was, now, "config.json changed beyond its epochs");
            }
            _ => assert!(now == *bytes, "{name} changed"),
        }
    }
}

#[test]
fn train_a_file_in_place_of_the_output_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    write(&file, b"x");
    let line = error_line(&run(quick_job(&file, &["--epochs", "1"])));
    assert!(
        line.contains(&format!("{}: ", file.display())) && line.contains("Not a directory"),
        "{line}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// Why the mount tests are ignored by `cargo test`: `.ci/run` runs them with `--ignored`
/// where it can mount (root with CAP_SYS_ADMIN), and there they fail if a mount is refused.
const NEEDS_MOUNT: &str =
    "needs CAP_SYS_ADMIN to mount (chmod does not stop root): .ci/run runs it where mounting works";

/// Mounts with `mount`, or fails the test naming why (see [`NEEDS_MOUNT`]).
fn mounted(what: &str, mount: Result<Mount, std::io::Error>) -> Mount {
    mount.unwrap_or_else(|e| panic!("{what} refused ({e}): this test {NEEDS_MOUNT}"))
}

#[test]
#[ignore = "needs CAP_SYS_ADMIN to mount a read-only folder; .ci/run runs it with --ignored where mounting works"]
fn train_mount_read_only_output_folder_is_a_clear_error_and_the_checkpoint_stays() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    let run_dir = ro.join("run");
    let out = run(quick_job(&run_dir, &["--epochs", "1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let before = snapshot(&run_dir);
    let _mount = mounted("read-only bind mount", mount_read_only(&ro));
    assert!(
        std::fs::write(ro.join("probe"), b"x").is_err(),
        "the mount is not read-only"
    );
    // A new run in the read-only folder.
    let new = ro.join("new");
    let line = error_line(&run(quick_job(&new, &["--epochs", "1"])));
    assert!(
        line.contains(&format!("{}: Read-only file system", new.display())),
        "{line}"
    );
    // Resuming the run there: refused at its first write, nothing changed.
    let line = error_line(&run({
        let mut c = resume(&run_dir);
        c.args(["--epochs", "2"]);
        c
    }));
    assert!(line.contains("Read-only file system"), "{line}");
    assert!(line.contains(&run_dir.display().to_string()), "{line}");
    assert!(snapshot(&run_dir) == before, "the run folder changed");
    // The checkpoint is still usable from the read-only folder.
    write(
        &dir.path().join("img.png"),
        &encode(&solid(20, 20, [9, 9, 9]), ImageFormat::Png),
    );
    let mut cmd = trainer();
    cmd.args(["predict", "--checkpoint"])
        .arg(run_dir.join("model.safetensors"))
        .arg(dir.path().join("img.png"));
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Fills the file system of `dir` with a file, then frees `keep` bytes of it.
fn fill_disk(dir: &Path, keep: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 64 << 10];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(keep)).unwrap();
    path
}

#[test]
#[ignore = "needs CAP_SYS_ADMIN to mount a small tmpfs; .ci/run runs it with --ignored where mounting works"]
fn train_mount_full_disk_is_a_clear_error_and_the_checkpoint_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small-disk");
    std::fs::create_dir_all(&mnt).unwrap();
    let _mount = mounted("tmpfs mount", mount_tmpfs(&mnt, "4m"));
    let run_dir = mnt.join("run");
    let out = run(job(&run_dir, 1));
    assert!(out.status.success(), "{}", stderr(&out));
    let before = snapshot(&run_dir);
    // 48 KiB free: enough to rewrite metrics.jsonl and append a line, not for the
    // 176 KiB optimizer state of epoch 2.
    let filler = fill_disk(&mnt, 48 << 10);
    let line = error_line(&run({
        let mut c = resume(&run_dir);
        c.args(["--epochs", "2"]);
        c
    }));
    let opt2 = run_dir.join(format!("optimizer-step{}.safetensors", 2 * JOB_STEPS_PER_EPOCH));
    assert!(
        line.contains(&format!("{}: No space left on device", opt2.display())),
        "{line}"
    );
    assert_unchanged_but_the_epochs(&run_dir, &before, 2);
    assert_eq!(assert_consistent(&run_dir), (1, JOB_STEPS_PER_EPOCH));
    // With space again, the run resumes from epoch 1 and ends as if nothing happened.
    std::fs::remove_file(filler).unwrap();
    let out = run({
        let mut c = resume(&run_dir);
        c.args(["--epochs", &JOB_EPOCHS.to_string()]);
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("resuming"), "{}", stdout(&out));
    assert_matches_reference(&run_dir);
}

#[test]
fn train_a_file_size_limit_is_a_clear_error_and_the_checkpoint_stays() {
    // The same write failure without a mount: RLIMIT_FSIZE makes writes past 100 KiB fail
    // with EFBIG (SIGXFSZ ignored), so the 176 KiB checkpoint files of epoch 2 cannot be
    // written.
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let out = run(job(&run_dir, 1));
    assert!(out.status.success(), "{}", stderr(&out));
    let before = snapshot(&run_dir);
    let mut cmd = resume(&run_dir);
    cmd.args(["--epochs", "2"]);
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let r = libc::rlimit {
                rlim_cur: 100 << 10,
                rlim_max: 100 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let line = error_line(&run(cmd));
    let opt2 = run_dir.join(format!("optimizer-step{}.safetensors", 2 * JOB_STEPS_PER_EPOCH));
    assert!(
        line.contains(&format!("{}: File too large", opt2.display())),
        "{line}"
    );
    assert_unchanged_but_the_epochs(&run_dir, &before, 2);
    assert_eq!(assert_consistent(&run_dir), (1, JOB_STEPS_PER_EPOCH));
}

#[test]
fn train_a_batch_larger_than_the_data_is_the_whole_data() {
    // --batch-size 10^12 once tried to allocate 10^16 bytes and aborted: a batch is at most
    // the whole set, with the same result as a batch of exactly that size.
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge");
    let exact = dir.path().join("exact");
    for (run_dir, batch) in [(&huge, "1000000000000"), (&exact, "80")] {
        let out = run(quick_job(run_dir, &["--epochs", "2", "--batch-size", batch]));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(
        weights(&huge.join("model.safetensors")),
        weights(&exact.join("model.safetensors"))
    );
    let data = dir.path().join("data");
    write(
        &data.join("a/x.png"),
        &encode(&solid(20, 20, [0, 0, 0]), ImageFormat::Png),
    );
    write(
        &data.join("b/x.png"),
        &encode(&solid(20, 20, [255, 255, 255]), ImageFormat::Png),
    );
    let meta = CheckpointMeta {
        classes: vec!["a".into(), "b".into()],
        normalization: Normalization::unit(1),
        epoch: 0,
        step: 0,
        extra: Default::default(),
    };
    let ckpt = dir.path().join("two.safetensors");
    save_checkpoint(&ckpt, &Network::from_spec("dense:2", gray(20), 1).unwrap(), &meta).unwrap();
    let mut cmd = trainer();
    cmd.args([
        "eval",
        "--batch-size",
        "100000000000000000",
        "--json",
        "--checkpoint",
    ])
    .arg(&ckpt)
    .arg("--data")
    .arg(&data);
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"images\":2"), "{}", stdout(&out));
}
