use super::*;

#[test]
fn answers_decode_as_centrifugo_reads_them() {
    let result: Answer<ConnectResult> =
        decode(br#"{"result":{"user":"56","expire_at":7,"meta":{}}}"#).unwrap();
    assert!(matches!(result, Answer::Result(ConnectResult { ref user, expire_at: 7, .. }) if user == "56"));
    let error: Answer<ConnectResult> = decode(br#"{"error":{"code":1000,"message":"no"}}"#).unwrap();
    assert!(matches!(error, Answer::Error(AppError { code: 1000, ref message }) if message == "no"));
    let both = br#"{"error":{"code":1000},"disconnect":{"code":4501,"reason":"unauthorized"}}"#;
    let disconnect: Answer<ConnectResult> = decode(both).unwrap();
    assert!(matches!(disconnect, Answer::Disconnect(AppDisconnect { code: 4501, .. })), "a disconnect wins");
}

#[test]
fn anything_else_is_garbage() {
    for body in [
        &b""[..],
        b"null",
        b"{}",
        b"[]",
        b"<html>",
        br#"{"result":{"expire_at":1}}"#,
        br#"{"result":{"user":56}}"#,
        br#"{"disconnect":{"code":1000}}"#,
        br#"{"disconnect":{"code":5000}}"#,
        br#"{"error":{"message":"no code"}}"#,
    ] {
        let decoded = decode::<ConnectResult>(body);
        assert_eq!(decoded.err(), Some(Failure::Garbage), "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn channel_requests_are_written_as_centrifugo_reads_them() {
    let call = ChannelCall { caller: Caller::new("c1", Via::Sse), user: "alice", channel: "news" };
    let data = serde_json::json!({"n": 1});
    let subscribe = |data| serde_json::to_string(&SubscribeRequest { call, data }).unwrap();
    let head = r#"{"client":"c1","transport":"sse","protocol":"json","encoding":"json","user":"alice","channel":"news""#;
    assert_eq!(subscribe(None), format!("{head}}}"));
    assert_eq!(subscribe(Some(&data)), format!(r#"{head},"data":{{"n":1}}}}"#));
    let publish = PublishRequest { call, data: &data };
    assert_eq!(serde_json::to_string(&publish).unwrap(), format!(r#"{head},"data":{{"n":1}}}}"#));
}
