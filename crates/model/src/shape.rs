//! The shapes of the values that flow through a network, per sample.

use std::fmt;

/// The input of a network, one sample: `[c, h, w]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InputShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl InputShape {
    /// Values per sample, `c · h · w`.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Whether any dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for InputShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

/// The shape of one sample as it flows between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// `[c, h, w]` feature maps.
    Spatial { c: usize, h: usize, w: usize },
    /// A flat vector (after `flatten`), in C,H,W order.
    Flat(usize),
}

impl Shape {
    /// Values per sample.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Spatial { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }
    /// Whether the shape holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `(c, h, w)` of feature maps, `None` for a flat vector.
    pub fn spatial(&self) -> Option<(usize, usize, usize)> {
        match *self {
            Shape::Spatial { c, h, w } => Some((c, h, w)),
            Shape::Flat(_) => None,
        }
    }
}

impl From<InputShape> for Shape {
    fn from(i: InputShape) -> Self {
        Shape::Spatial {
            c: i.c,
            h: i.h,
            w: i.w,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Spatial { c, h, w } => write!(f, "{c}x{h}x{w}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}
