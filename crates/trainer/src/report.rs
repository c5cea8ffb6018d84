//! What a run reports: per-epoch metrics (`metrics.jsonl`), the confusion matrix with
//! per-class precision and recall, and the loss / accuracy curves (`curves.png`).

use crate::error::TrainerError;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// One line of `metrics.jsonl`. Accuracies are fractions in `[0, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// `null` when there is no validation set.
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// Training images per second (forward, backward and SGD step; loading excluded).
    pub images_per_sec: f64,
    /// Wall-clock seconds of the epoch's training steps.
    pub seconds: f64,
    /// Optimizer steps completed at the end of the epoch.
    pub step: u64,
    /// The learning rate of the epoch's last step (absent in runs made before schedules).
    #[serde(default)]
    pub lr: Option<f64>,
}

impl EpochMetrics {
    /// One human-readable line: `epoch 3/5  loss 0.412  train 86.1 %  val 91.2 %  ...`.
    pub fn human(&self, epochs: usize) -> String {
        let mut s = format!(
            "epoch {:>w$}/{epochs}  loss {:.4}  train {:5.1} %",
            self.epoch,
            self.train_loss,
            100.0 * self.train_accuracy,
            w = epochs.to_string().len()
        );
        if let (Some(l), Some(a)) = (self.val_loss, self.val_accuracy) {
            let _ = write!(s, "  val loss {l:.4}  val {:5.1} %", 100.0 * a);
        }
        let _ = write!(
            s,
            "  {:>9} img/s  {:.2} s",
            thousands(self.images_per_sec),
            self.seconds
        );
        s
    }
}

/// `12345.6` as `12,346`.
pub fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `counts[true][predicted]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub classes: Vec<String>,
    pub counts: Vec<Vec<usize>>,
}

/// Precision and recall of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub class: String,
    /// Correct predictions of the class over all predictions of it (`null` if never predicted).
    pub precision: Option<f64>,
    /// Correct predictions of the class over its samples (`null` if it has none).
    pub recall: Option<f64>,
    pub support: usize,
}

impl Confusion {
    pub fn new(classes: &[String]) -> Self {
        Confusion {
            classes: classes.to_vec(),
            counts: vec![vec![0; classes.len()]; classes.len()],
        }
    }
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }
    pub fn correct(&self) -> usize {
        (0..self.counts.len()).map(|i| self.counts[i][i]).sum()
    }
    /// Fraction correct (0 for an empty matrix).
    pub fn accuracy(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.correct() as f64 / self.total() as f64
        }
    }
    pub fn scores(&self) -> Vec<ClassScore> {
        let k = self.classes.len();
        (0..k)
            .map(|c| {
                let tp = self.counts[c][c] as f64;
                let predicted: usize = (0..k).map(|t| self.counts[t][c]).sum();
                let support: usize = self.counts[c].iter().sum();
                ClassScore {
                    class: self.classes[c].clone(),
                    precision: (predicted > 0).then(|| tp / predicted as f64),
                    recall: (support > 0).then(|| tp / support as f64),
                    support,
                }
            })
            .collect()
    }
    /// The matrix as aligned text, rows = true class, columns = predicted, then per-class
    /// precision and recall.
    pub fn table(&self) -> String {
        let w = self.classes.iter().map(|c| c.len()).max().unwrap_or(4).max(6);
        let mut s = format!("{:>w$}  predicted →\n{:>w$}", "true ↓", "");
        for c in &self.classes {
            let _ = write!(s, " {c:>w$}");
        }
        let _ = write!(s, "   {:>9} {:>9}", "precision", "recall");
        let scores = self.scores();
        for (i, row) in self.counts.iter().enumerate() {
            let _ = write!(s, "\n{:>w$}", self.classes[i]);
            for v in row {
                let _ = write!(s, " {v:>w$}");
            }
            let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", 100.0 * v));
            let _ = write!(
                s,
                "   {:>9} {:>9}",
                pct(scores[i].precision),
                pct(scores[i].recall)
            );
        }
        let _ = write!(
            s,
            "\naccuracy {:.1} % ({} of {})",
            100.0 * self.accuracy(),
            self.correct(),
            self.total()
        );
        s
    }
}

/// Draws `curves.png`: loss (left) and accuracy (right) per epoch, train and validation.
pub fn plot_curves(path: &Path, metrics: &[EpochMetrics], title: &str) -> Result<(), TrainerError> {
    use plotters::prelude::*;
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
    if metrics.is_empty() {
        return Ok(());
    }
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 20))?;
        let (left, right) = root.split_horizontally(500);
        let n = metrics.len() as f64;
        let x_range = 0.5..n.max(1.0) + 0.5;
        let loss_max = metrics
            .iter()
            .flat_map(|m| [Some(m.train_loss), m.val_loss])
            .flatten()
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-3)
            * 1.1;
        type Series = fn(&EpochMetrics) -> Option<f64>;
        let loss: [(&str, Series, RGBColor); 2] = [
            ("train", |m| Some(m.train_loss), BLUE),
            ("validation", |m| m.val_loss, RED),
        ];
        let accuracy: [(&str, Series, RGBColor); 2] = [
            ("train", |m| Some(100.0 * m.train_accuracy), BLUE),
            ("validation", |m| m.val_accuracy.map(|a| 100.0 * a), RED),
        ];
        let panels = [
            (&left, "loss", loss_max, loss),
            (&right, "accuracy (%)", 100.0, accuracy),
        ];
        for (area, label, y_max, series) in panels {
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(x_range.clone(), 0.0..y_max)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(label)
                .x_labels(metrics.len().min(10) + 2)
                .x_label_formatter(&|x| {
                    if x.fract() == 0.0 {
                        format!("{x:.0}")
                    } else {
                        String::new()
                    }
                })
                .draw()?;
            for (name, f, color) in series {
                let pts: Vec<(f64, f64)> = metrics
                    .iter()
                    .filter_map(|m| f(m).map(|v| (m.epoch as f64, v)))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| TrainerError::io(path, std::io::Error::other(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_scores_and_table() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut c = Confusion::new(&classes);
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (2, 1)] {
            c.add(t, p);
        }
        assert_eq!(c.total(), 5);
        assert_eq!(c.correct(), 3);
        let s = c.scores();
        assert_eq!(s[0].precision, Some(1.0));
        assert_eq!(s[0].recall, Some(2.0 / 3.0));
        assert_eq!(s[1].precision, Some(1.0 / 3.0));
        assert_eq!(s[2].precision, None);
        assert_eq!(s[2].recall, Some(0.0));
        let t = c.table();
        assert!(t.contains("accuracy 60.0 % (3 of 5)"), "{t}");
        assert!(t.contains("66.7 %"), "{t}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn curves_png_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curves.png");
        let m: Vec<EpochMetrics> = (1..=4)
            .map(|e| EpochMetrics {
                epoch: e,
                train_loss: 1.6 / e as f64,
                train_accuracy: 0.2 * e as f64,
                val_loss: Some(1.7 / e as f64),
                val_accuracy: Some(0.19 * e as f64),
                images_per_sec: 1000.0,
                seconds: 1.0,
                step: 10 * e as u64,
                lr: Some(0.1),
            })
            .collect();
        plot_curves(&p, &m, "test").unwrap();
        let img = image::open(&p).unwrap();
        assert_eq!((img.width(), img.height()), (1000, 420));
    }
}
