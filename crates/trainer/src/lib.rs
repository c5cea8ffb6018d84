//! # petal-trainer
//!
//! The library behind the `trainer` binary: synthetic flowers ([`synth`]), image-folder
//! loading ([`data`]), training-image augmentation ([`augment`]), the optimizer and loss
//! options ([`recipe`]), learning-rate schedules ([`schedule`]), the training loop and its
//! run folder ([`train`]), training over several processes ([`dist`]), reports ([`report`]), benchmarks ([`mod@bench`]) and the command
//! line ([`cli`]).

pub mod augment;
pub mod bench;
pub mod cli;
pub mod data;
pub mod dist;
pub mod error;
pub mod recipe;
pub mod report;
pub mod schedule;
pub mod synth;
pub mod train;

pub use error::TrainerError;
