mod support;

use support::*;

#[tokio::test]
async fn publish_reaches_subscriber() {
    let app = TestApp::spawn(&config("")).await;
    let mut s = app.subscribe("topic=room.a", &[]).await;
    let id = app.publish("/hooks/a", "hello").await;
    let e = s.next_event().await;
    assert_eq!(e.data, "hello");
    assert_eq!(e.id, id);
    app.shutdown().await;
}
