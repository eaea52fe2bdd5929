//! Feeds arbitrary bytes to the frame parser, as a client's socket would. The check itself is
//! shared with the corpus replay test in crates/amqp/tests.
#![no_main]

#[path = "../../crates/amqp/tests/support/frame_check.rs"]
mod frame_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| frame_check::check(data));
