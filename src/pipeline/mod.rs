//! The main loop: plan, fetch, diff, publish, apply.
