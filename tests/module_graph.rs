//! No import circle between the files of any crate: within each crate's `src/`, file A
//! imports file B when A names a path (`crate::…`, `super::…`, `self::…`, in a `use` or in
//! code) that resolves to B's module (the longest module prefix that is a file). A
//! module's `mod` declarations do not count, and neither do the crate root's `pub use`
//! re-exports (the crate's face); test code (`tests.rs` modules, `#[cfg(test)]` blocks)
//! is left out. The circles are the strongly connected sets of two or more files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path (`["layers", "conv"]`; empty for the crate root) and its file.
type Modules = BTreeMap<Vec<String>, PathBuf>;

/// The modules of the crate whose sources are under `src`.
fn modules(src: &Path) -> Modules {
    let mut out = Modules::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if matches!(path.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                path.pop();
            }
            if path.iter().any(|s| s == "tests") {
                continue;
            }
            out.insert(path, p);
        }
    }
    out
}

/// `text` without comments and `#[cfg(test)]` modules.
fn code(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect();
    let text = lines.join("\n");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // The attribute applies to the next item: skip it when it is a `mod { ... }`.
        let open = after.find('{');
        let semi = after.find(';');
        match (open, semi) {
            (Some(o), s) if after[..o].contains("mod ") && s.is_none_or(|s| o < s) => {
                let mut depth = 0;
                let mut end = after.len();
                for (i, c) in after[o..].char_indices() {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    if depth == 0 {
                        end = o + i + 1;
                        break;
                    }
                }
                rest = &after[end..];
            }
            _ => {
                out.push_str("#[cfg(test)]");
                rest = &after["#[cfg(test)]".len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The paths of a `use` tree (`a::{b, c::{d, e}}`), expanded.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or_default().trim();
        if !path.is_empty() {
            out.push(format!("{prefix}{path}"));
        }
        return;
    };
    let head = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&format!("{prefix}{head}"), &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    expand(&format!("{prefix}{head}"), &inner[start..], out);
}

/// Every path of `code` that starts with `crate`, `super` or `self`.
fn paths(code: &str, root: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    // `use` items, expanded.
    let mut body = String::new();
    while let Some(at) = find_word(rest, "use") {
        let before = rest[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')') && before.rfind("pub(").is_some();
        // A `use` item starts a statement (or follows its visibility); the word elsewhere
        // (in a string) is not one.
        let item = before.is_empty() || before.ends_with([';', '{', '}', ']']) || public;
        if !item {
            body.push_str(&rest[..at + 3]);
            rest = &rest[at + 3..];
            continue;
        }
        let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        if !(root && public) {
            expand("", &rest[at + 3..end], &mut out);
        }
        body.push_str(&rest[..at]);
        rest = &rest[(end + 1).min(rest.len())..];
    }
    body.push_str(rest);
    // Paths in code.
    let bytes = body.as_bytes();
    for word in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = body[from..].find(word) {
            let at = from + i;
            from = at + word.len();
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':')
            {
                continue;
            }
            let end = body[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(body.len(), |e| at + e);
            out.push(body[at..end].to_string());
        }
    }
    out.retain(|p| p.starts_with("crate::") || p.starts_with("super::") || p.starts_with("self::"));
    out
}

/// Where `word` starts as a whole word in `text`.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let before = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        let after = b.get(at + word.len()).is_none_or(|c| c.is_ascii_whitespace());
        if before && after {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The module a path in module `at` resolves to: its longest prefix that is a module.
fn resolve(mods: &Modules, at: &[String], path: &str) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let (mut base, mut segs): (Vec<String>, &[&str]) = match segs.first() {
        Some(&"crate") => (Vec::new(), &segs[1..]),
        Some(&"self") => (at.to_vec(), &segs[1..]),
        Some(&"super") => (at.to_vec(), &segs[..]),
        _ => return None,
    };
    while let Some((&"super", rest)) = segs.split_first() {
        base.pop();
        segs = rest;
    }
    base.extend(segs.iter().filter(|s| **s != "self").map(|s| s.to_string()));
    (0..=base.len())
        .rev()
        .map(|k| base[..k].to_vec())
        .find(|m| mods.contains_key(m))
}

/// The strongly connected sets of two or more modules of `edges` (Tarjan's algorithm).
fn circles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, (usize, usize)>,
        stack: Vec<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, (s.next, s.next));
        s.next += 1;
        s.stack.push(v);
        for w in &s.edges[v] {
            let (w, _) = s.edges.get_key_value(w).expect("edges point at modules");
            match s.index.get(w).copied() {
                None => {
                    visit(s, w);
                    let low = s.index[v].1.min(s.index[w].1);
                    s.index.get_mut(v).unwrap().1 = low;
                }
                Some((wi, _)) if s.stack.contains(&w) => {
                    let low = s.index[v].1.min(wi);
                    s.index.get_mut(v).unwrap().1 = low;
                }
                Some(_) => {}
            }
        }
        let (vi, vl) = s.index[v];
        if vi == vl {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Each crate's import edges between its files.
fn crate_edges(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mods = modules(src);
    let mut edges = BTreeMap::new();
    for (m, file) in &mods {
        let text = code(&std::fs::read_to_string(file).unwrap());
        let targets = paths(&text, m.is_empty())
            .iter()
            .filter_map(|p| resolve(&mods, m, p))
            .filter(|t| t != m)
            .collect();
        edges.insert(m.clone(), targets);
    }
    edges
}

fn crate_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut srcs = vec![root.join("src")];
    for e in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        srcs.push(e.path().join("src"));
    }
    srcs.retain(|s| s.is_dir());
    srcs.sort();
    srcs
}

#[test]
fn no_import_circle_between_the_files_of_any_crate() {
    let mut found = Vec::new();
    for src in crate_sources() {
        for comp in circles(&crate_edges(&src)) {
            let names: Vec<String> = comp.iter().map(|m| m.join("::")).collect();
            found.push(format!("{}: {}", src.display(), names.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_checker_finds_a_circle_and_follows_super_and_use_groups() {
    let dir = std::env::temp_dir().join(format!("petal-module-graph-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    let files = [
        ("lib.rs", "mod a;\nmod b;\npub use a::X;\n"),
        (
            "a/mod.rs",
            "mod c;\npub struct X;\n// use crate::b::Y; (a comment)\n",
        ),
        (
            "a/c.rs",
            "use super::super::{b::{self, Y}};\nfn f() -> Y { b::Y }\n",
        ),
        (
            "b.rs",
            "pub struct Y;\nfn g() { let _ = crate::a::X; }\n#[cfg(test)]\nmod tests { use crate::a::c; }\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(src.join(name), text).unwrap();
    }
    let edges = crate_edges(&src);
    let key = |s: &str| {
        s.split("::")
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(edges[&key("a::c")], BTreeSet::from([key("b")]));
    assert_eq!(
        edges[&key("b")],
        BTreeSet::from([key("a")]),
        "the test module is left out"
    );
    assert!(edges[&key("a")].is_empty(), "comments are left out");
    assert!(edges[&key("")].is_empty(), "the root's pub use is its face");
    assert!(circles(&edges).is_empty());
    // a -> b -> a: a circle.
    std::fs::write(src.join("a/mod.rs"), "mod c;\npub struct X;\nuse crate::b::Y;\n").unwrap();
    let found = circles(&crate_edges(&src));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&key("a"), &key("b")])
    );
}
