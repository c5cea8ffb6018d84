//! A trainable tensor: its value, its gradient, and the state its optimizer keeps for it.

/// A trainable tensor with its gradient and optimizer state.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// PyTorch `state_dict` name: `"{layer index}.weight"`, `"3.body.1.bias"`, ...
    pub name: String,
    /// Dimensions, as PyTorch's (`[out_c, in_c, kh, kw]`, `[out, in]`, `[out]`).
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
    /// The optimizer's state for this tensor: one vector of the value's length per slot of
    /// the optimizer's kind (`OptimizerKind::layout`: SGD's velocity; AdamW's first and
    /// second moments), owned and allocated by the optimizer; empty until it is.
    pub state: Vec<Vec<f32>>,
}

impl Param {
    /// A tensor of zeros named `name` of shape `shape`, with no optimizer state.
    pub(crate) fn zeros(name: String, shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Param {
            name,
            shape,
            value: vec![0.0; n],
            grad: vec![0.0; n],
            state: Vec::new(),
        }
    }

    /// Gives the optimizer state `slots` vectors of the value's length: zero where it has
    /// none (or another optimizer's), kept where it has them.
    pub(crate) fn ensure_state(&mut self, slots: usize) {
        let n = self.value.len();
        if self.state.len() != slots || self.state.iter().any(|s| s.len() != n) {
            self.state = vec![vec![0.0; n]; slots];
        }
    }
}
