//! `train --resume RUN` with other options: every option of `train` (the list comes from
//! the command's own definition, so a new option without a rule fails this test) is either
//! applied with a notice or refused with one line naming it and the run's value; an option
//! given with the run's own value is accepted.

mod common;

use clap::CommandFactory;
use common::job::*;
use common::*;
use std::path::Path;

/// What `--resume` does with an option.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// Applied: the run resumes and says `resuming with --flag ...`.
    Applied,
    /// Refused: one error line naming `--flag` and the run's value; nothing is trained.
    Refused,
    /// Given with the run's own value: the run resumes.
    Same,
}

/// For each option of `train` (clap's id): arguments that differ from the run's (or, for
/// `Same`, equal it) and the rule they meet. The run is `quick_job` (seednet on 20x20
/// grayscale synthetic flowers, 20 per class, batch 16, 1 thread, seed 1, 1 epoch).
fn cases(folder: &Path) -> Vec<(&'static str, Vec<String>, Rule)> {
    let f = folder.display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        ("data", vec!["--data".into(), f.clone()], Rule::Refused),
        ("val", vec!["--val".into(), f], Rule::Refused),
        ("arch", s(&["--arch", "flowernet"]), Rule::Refused),
        ("size", s(&["--size", "24"]), Rule::Refused),
        ("grayscale", s(&["--grayscale"]), Rule::Same),
        ("rgb", s(&["--rgb"]), Rule::Refused),
        ("epochs", s(&["--epochs", "2"]), Rule::Applied),
        ("batch_size", s(&["--batch-size", "8"]), Rule::Refused),
        ("lr", s(&["--lr", "1e9"]), Rule::Refused),
        ("optimizer", s(&["--optimizer", "adamw"]), Rule::Refused),
        ("momentum", s(&["--momentum", "0.5"]), Rule::Refused),
        ("nesterov", s(&["--nesterov"]), Rule::Refused),
        ("beta1", s(&["--beta1", "0.5"]), Rule::Refused),
        ("beta2", s(&["--beta2", "0.9"]), Rule::Refused),
        ("eps", s(&["--eps", "1e-6"]), Rule::Refused),
        ("weight_decay", s(&["--weight-decay", "0.1"]), Rule::Refused),
        ("lr_schedule", s(&["--lr-schedule", "cosine"]), Rule::Refused),
        ("warmup_epochs", s(&["--warmup-epochs", "0.5"]), Rule::Refused),
        ("lr_milestones", s(&["--lr-milestones", "2"]), Rule::Refused),
        ("lr_gamma", s(&["--lr-gamma", "0.5"]), Rule::Refused),
        ("label_smoothing", s(&["--label-smoothing", "0.1"]), Rule::Refused),
        ("augment", s(&["--augment", "flip"]), Rule::Refused),
        ("val_split", s(&["--val-split", "0.3"]), Rule::Refused),
        ("synth_per_class", s(&["--synth-per-class", "30"]), Rule::Refused),
        (
            "synth_difficulty",
            s(&["--synth-difficulty", "hard"]),
            Rule::Refused,
        ),
        ("normalize", s(&["--normalize"]), Rule::Refused),
        ("patience", s(&["--patience", "3"]), Rule::Applied),
        ("checkpoint_every", s(&["--checkpoint-every", "2"]), Rule::Applied),
        ("seed", s(&["--seed", "9"]), Rule::Refused),
        // The run's is `auto` (the default): another algorithm rounds otherwise.
        ("conv_algo", s(&["--conv-algo", "direct"]), Rule::Refused),
        ("threads", s(&["--threads", "2"]), Rule::Applied),
        ("max_memory", s(&["--max-memory", "8G"]), Rule::Applied),
    ]
}

#[test]
fn every_train_option_with_resume_is_applied_with_a_notice_or_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("photos");
    std::fs::create_dir_all(&folder).unwrap();
    let cases = cases(&folder);
    // Every option of `train` has a case (but `--resume` itself, and `--out`, which the
    // parser refuses beside it).
    let ids: Vec<String> = petal_trainer::cli::Cli::command()
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| !matches!(id.as_str(), "help" | "version" | "resume" | "out"))
        .collect();
    for id in &ids {
        assert!(
            cases.iter().any(|(c, _, _)| c == id),
            "option `{id}` of train has no resume case here"
        );
    }
    assert_eq!(ids.len(), cases.len());
    for (id, args, rule) in cases {
        // A fresh finished run each time (an applied option changes the run).
        let run_dir = dir.path().join(id);
        let out = run(quick_job(&run_dir, &["--epochs", "1"]));
        assert!(out.status.success(), "{}", stderr(&out));
        let config = std::fs::read(run_dir.join("config.json")).unwrap();
        let mut cmd = resume(&run_dir);
        cmd.args(&args);
        let out = run(cmd);
        let flag = &args[0];
        match rule {
            Rule::Refused => {
                let line = error_line(&out);
                assert!(
                    line.starts_with(&format!("error: {flag}")) && line.contains("this run's is"),
                    "{id}: {line}"
                );
                assert_eq!(out.status.code(), Some(1), "{id}");
                assert!(!stdout(&out).contains("resuming"), "{id}: {}", stdout(&out));
                assert_eq!(
                    std::fs::read(run_dir.join("config.json")).unwrap(),
                    config,
                    "{id}"
                );
            }
            Rule::Applied => {
                assert!(out.status.success(), "{id}: {}", stderr(&out));
                let notice = format!("resuming with {flag} {}", args[1]);
                assert!(stdout(&out).contains(&notice), "{id}: {}", stdout(&out));
            }
            Rule::Same => {
                assert!(out.status.success(), "{id}: {}", stderr(&out));
                assert!(!stdout(&out).contains("resuming with"), "{id}: {}", stdout(&out));
            }
        }
    }
}

#[test]
fn options_with_the_runs_own_values_resume_and_changes_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let out = run(quick_job(&run_dir, &["--epochs", "1", "--lr", "0.05"]));
    assert!(out.status.success(), "{}", stderr(&out));
    // The run's own values, written another way: accepted, nothing changes.
    let mut cmd = resume(&run_dir);
    cmd.args([
        "--lr",
        "0.050",
        "--batch-size",
        "16",
        "--seed",
        "1",
        "--arch",
        "seednet",
    ])
    .args(["--synth-per-class", "20", "--size", "20"]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    // Raised epochs and a checkpoint interval are recorded in config.json, so a later
    // resume without them keeps them; lower epochs are refused.
    let mut cmd = resume(&run_dir);
    cmd.args(["--epochs", "3", "--checkpoint-every", "10m"]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("resuming with --epochs 3 (was 1)"), "{text}");
    assert!(
        text.contains("resuming with --checkpoint-every 10m (was none)"),
        "{text}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["epochs"], 3);
    assert_eq!(config["checkpoint_every"], "10m");
    assert_eq!(metrics(&run_dir).len(), 3);
    let mut cmd = resume(&run_dir);
    cmd.args(["--epochs", "2"]);
    let line = error_line(&run(cmd));
    assert!(
        line.contains("--epochs 2: this run trains 3 epochs; a resumed run's epochs can only grow"),
        "{line}"
    );
}
