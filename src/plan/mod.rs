//! Which windows to read next, and the checkpoint that records progress.
pub mod window;

pub use window::Window;
