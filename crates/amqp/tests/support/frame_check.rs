//! The property both the fuzz target and the corpus replay check: whatever the parser accepts
//! from arbitrary bytes encodes back to something that parses to the same value, and nothing
//! panics on the way.

use bytes::BytesMut;
use warren_amqp::frame::{write_body, write_header, write_method};
use warren_amqp::{BasicProperties, Frame, parse_frame};

pub fn check(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = parse_frame(&mut buf, 131_072) {
        let mut again = BytesMut::new();
        match &frame {
            Frame::Method { channel, method } => write_method(&mut again, *channel, method),
            Frame::Header { channel, header } => {
                // Properties that validated must decode fully, and re-encode to the same values.
                let props = BasicProperties::decode(&header.properties)
                    .expect("validated properties decode");
                write_header(&mut again, *channel, header.body_size, &props.encode());
                match parse_frame(&mut again, 0).expect("re-encoded header parses") {
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
}
