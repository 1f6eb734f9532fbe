//! Which windows to read next, and the checkpoint that records progress.
pub mod checkpoint;
mod dense;
pub mod error;
pub mod kind;
pub mod planner;
mod rescan;
pub mod retry;
pub mod window;

pub use checkpoint::{
    Checkpoint, CheckpointError, InFlight, RescanCursor, RescanPass, Sweep, CHECKPOINT_VERSION,
};
pub use kind::ReadSummary;
pub use planner::{PlanError, PlannedWindow, Planner, WindowKind};
pub use retry::RetryWindow;
pub use window::Window;
