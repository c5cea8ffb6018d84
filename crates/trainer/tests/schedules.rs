//! Learning-rate schedules against PyTorch's schedulers step by step
//! (`tests/fixtures/torch_schedules.json`, written by `make_torch_schedules.py`).

use petal_trainer::schedule::{Schedule, ScheduleKind};
use serde_json::Value;

#[test]
fn schedules_match_pytorch_step_by_step() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/torch_schedules.json"
    );
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(f["format"], "petal-torch-schedules/1");
    let (epochs, spe) = (
        f["epochs"].as_u64().unwrap() as usize,
        f["steps_per_epoch"].as_u64().unwrap() as usize,
    );
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for c in cases {
        let kind = ScheduleKind::parse(c["schedule"].as_str().unwrap()).unwrap();
        let milestones: Vec<usize> = c["milestones"]
            .as_array()
            .map(|a| a.iter().map(|m| m.as_u64().unwrap() as usize).collect())
            .unwrap_or_default();
        let s = Schedule::new(
            kind,
            c["lr"].as_f64().unwrap(),
            epochs,
            spe,
            c["warmup_epochs"].as_f64().unwrap_or(0.0),
            &milestones,
            c["gamma"].as_f64().unwrap_or(0.1),
        );
        if let Some(w) = c["warmup_steps"].as_u64() {
            assert_eq!(s.warmup, w as usize, "{c}");
        }
        let lrs = c["lrs"].as_array().unwrap();
        assert_eq!(lrs.len(), epochs * spe);
        for (i, want) in lrs.iter().enumerate() {
            let want = want.as_f64().unwrap();
            let got = s.lr_at(i);
            assert!(
                (got - want).abs() <= 1e-9 * want.abs() + 1e-15,
                "{} step {i}: {got} vs PyTorch {want} ({c:?})",
                kind.name()
            );
        }
    }
}
