//! Tests across the module: seed fixtures, every validation error with its place,
//! and runs through fake job runners (a scripted one and a real `sh -c` one).

mod fakes;
mod run_tests;
mod validate_tests;
