//! A faithful simulator of the Tanma API, for tests, the demo and benchmarks.
