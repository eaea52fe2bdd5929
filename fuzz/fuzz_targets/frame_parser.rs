//! Feeds arbitrary bytes to the frame parser, as a client's socket would. Whatever parses must
//! encode back to something that parses to the same value; nothing may panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_amqp::frame::{write_body, write_header, write_method};
use warren_amqp::{BasicProperties, Frame, parse_frame};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = parse_frame(&mut buf, 131_072) {
        let mut again = BytesMut::new();
        match &frame {
            Frame::Method { channel, method } => write_method(&mut again, *channel, method),
            Frame::Header { channel, header } => {
                // Properties that validated must decode fully, and re-encode to the same values.
                let props = BasicProperties::decode(&header.properties).expect("validated properties decode");
                write_header(&mut again, *channel, header.body_size, &props.encode());
                let back = parse_frame(&mut again, 0).expect("re-encoded header parses");
                match back {
                    Some(Frame::Header { header: h2, .. }) => {
                        assert_eq!(BasicProperties::decode(&h2.properties).ok(), Some(props));
                    }
                    other => panic!("header became {other:?}"),
                }
                continue;
            }
            Frame::Body { channel, payload } => write_body(&mut again, *channel, payload),
            Frame::Heartbeat { .. } => continue,
        }
        let back = parse_frame(&mut again, 0).expect("re-encoded frame parses");
        assert_eq!(back.as_ref(), Some(&frame));
    }
});
