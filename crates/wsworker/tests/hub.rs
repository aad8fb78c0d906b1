//! The Hub across a server's worker threads: users, groups, all and one connection, each
//! message to exactly the connections it names, in order.

mod common;

use std::sync::mpsc;
use std::thread;

use common::{END, RawClient, WAIT, connect_reported, texts_until_end};
use wsworker::{Error, Hub, Message, RunningServer, Target, Worker};
use wsworker_proto::Event;

/// A server of two workers whose connections bind `?user=` and join `?room=` as they open.
/// Each connection's id is reported once it has done so.
fn server() -> (RunningServer, Hub, mpsc::Receiver<u64>) {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.count(2);
    let (opened_tx, opened) = mpsc::channel();
    worker.on_connect(move |conn| {
        if let Some(user) = conn.request().query_param("user") {
            conn.bind_uid(&user).unwrap();
        }
        if let Some(room) = conn.request().query_param("room") {
            conn.join_group(&room).unwrap();
        }
        let _ = opened_tx.send(conn.id());
    });
    let hub = worker.hub();
    (worker.start().unwrap(), hub, opened)
}

#[test]
fn users_groups_all_and_one_connection_reach_exactly_theirs() {
    let (server, hub, opened) = server();
    let (mut tom_phone, tom_phone_id) = connect_reported(&server, &opened, "/?user=tom&room=red");
    let (mut tom_laptop, _) = connect_reported(&server, &opened, "/?user=tom&room=blue");
    let (mut ann, ann_id) = connect_reported(&server, &opened, "/?user=ann&room=red");
    let (mut guest, guest_id) = connect_reported(&server, &opened, "/");

    assert_eq!(hub.uid_connections("tom").len(), 2);
    assert!(hub.is_uid_online("ann"));
    assert!(!hub.is_uid_online("bob"));
    assert_eq!(hub.group_members("red"), {
        let mut ids = vec![tom_phone_id, ann_id];
        ids.sort_unstable();
        ids
    });
    assert_eq!(hub.group_len("blue"), 1);
    assert_eq!(hub.uid_of(ann_id).as_deref(), Some("ann"));
    assert_eq!(hub.groups_of(tom_phone_id), ["red"]);

    // From a thread of the test's own, outside every worker.
    assert_eq!(hub.send_to_uid("tom", "to tom"), 2);
    assert_eq!(hub.send_to_group("red", "to red"), 2);
    assert_eq!(
        hub.send(Target::group("red").except(ann_id), "red but ann"),
        1
    );
    assert_eq!(hub.send_to_conn(guest_id, "to guest"), 1);
    assert_eq!(hub.send_to_uid("bob", "to nobody"), 0);
    assert_eq!(
        hub.send(Target::all().except(tom_phone_id), "all but one"),
        3
    );
    assert_eq!(hub.send_to_all(END), 4);

    assert_eq!(
        texts_until_end(&mut tom_phone),
        ["to tom", "to red", "red but ann"]
    );
    assert_eq!(texts_until_end(&mut tom_laptop), ["to tom", "all but one"]);
    assert_eq!(texts_until_end(&mut ann), ["to red", "all but one"]);
    assert_eq!(texts_until_end(&mut guest), ["to guest", "all but one"]);
    drop((tom_phone, tom_laptop, ann, guest));
    server.shutdown();
}

#[test]
fn leaving_unbinding_and_closing_take_a_connection_out() {
    let (server, hub, opened) = server();
    let (mut a, a_id) = connect_reported(&server, &opened, "/?user=tom&room=red");
    let (mut b, b_id) = connect_reported(&server, &opened, "/?user=tom&room=red");

    hub.leave_group(a_id, "red");
    assert_eq!(hub.group_members("red"), [b_id]);
    hub.unbind_uid(b_id);
    assert_eq!(hub.uid_connections("tom"), [a_id]);
    hub.send_to_group("red", "red");
    hub.send_to_uid("tom", "tom");
    hub.send_to_all(END);
    assert_eq!(texts_until_end(&mut a), ["tom"]);
    assert_eq!(texts_until_end(&mut b), ["red"]);

    // A new user replaces the old one; ungroup empties a group.
    hub.bind_uid(b_id, "ann").unwrap();
    hub.bind_uid(b_id, "bob").unwrap();
    assert!(!hub.is_uid_online("ann"));
    assert_eq!(hub.uid_connections("bob"), [b_id]);
    hub.join_group(a_id, "blue").unwrap();
    hub.join_group(a_id, "blue").unwrap();
    assert_eq!(hub.group_len("blue"), 1);
    hub.ungroup("blue");
    assert_eq!(hub.group_len("blue"), 0);
    assert!(hub.groups_of(a_id).is_empty());

    // A connection that ends leaves its user and its groups.
    hub.join_group(a_id, "green").unwrap();
    a.conn.close(wsworker::CloseCode::NORMAL, "bye").unwrap();
    a.flush();
    a.events_until_close();
    drop(a);
    let deadline = std::time::Instant::now() + WAIT;
    while hub.is_uid_online("tom") && std::time::Instant::now() < deadline {
        thread::yield_now();
    }
    assert!(
        !hub.is_uid_online("tom"),
        "the closed connection left its user"
    );
    assert_eq!(hub.group_len("green"), 0);
    assert!(matches!(hub.join_group(a_id, "red"), Err(Error::Closed)));
    assert!(matches!(hub.bind_uid(a_id, "tom"), Err(Error::Closed)));
    assert_eq!(hub.send_to_conn(a_id, "gone"), 0);
    drop(b);
    server.shutdown();
}

#[test]
fn a_chat_room_from_inside_the_callbacks_leaves_out_the_sender() {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.count(2);
    let hub = worker.hub();
    let (opened_tx, opened) = mpsc::channel();
    worker.on_connect(move |conn| {
        conn.join_group("room").unwrap();
        let _ = opened_tx.send(conn.id());
    });
    worker.on_message(move |conn, msg| {
        for room in conn.groups() {
            hub.send(Target::group(room).except(conn.id()), msg.clone());
        }
        Ok(())
    });
    let hub = worker.hub();
    let server = worker.start().unwrap();
    let mut clients: Vec<RawClient> = (0..3)
        .map(|_| connect_reported(&server, &opened, "/").0)
        .collect();
    clients[0].conn.send_text("hello from 0").unwrap();
    clients[0].flush();
    // The others hear it; after the mark, the sender has heard nothing.
    for client in &mut clients[1..] {
        match client.next_event() {
            Some(Ok(Event::Message(Message::Text(text)))) => assert_eq!(text, "hello from 0"),
            other => panic!("{other:?}"),
        }
    }
    hub.send_to_all(END);
    assert!(texts_until_end(&mut clients[0]).is_empty());
    drop(clients);
    server.shutdown();
}

#[test]
fn messages_to_all_arrive_whole_and_in_order_on_every_worker() {
    const COUNT: usize = 10_000;
    let (server, hub, opened) = server();
    let clients: Vec<RawClient> = (0..4)
        .map(|i| connect_reported(&server, &opened, &format!("/?room=r{}", i % 2)).0)
        .collect();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| thread::spawn(move || texts_until_end(&mut client)))
        .collect();
    for i in 0..COUNT {
        hub.send_to_all(i.to_string());
    }
    hub.send_to_all(END);
    let expected: Vec<String> = (0..COUNT).map(|i| i.to_string()).collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), expected);
    }
    server.shutdown();
}

#[test]
fn a_client_sees_its_connection_open_only_once_on_connect_has_joined_its_room() {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.on_connect(|conn| {
        // A slow on_connect (a lookup, say): the 101 waits for it.
        thread::sleep(std::time::Duration::from_millis(200));
        conn.join_group("room").unwrap();
        conn.send("welcome").unwrap();
    });
    let hub = worker.hub();
    let server = worker.start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    // Open for the client: in the room already, so a message to the room reaches it.
    assert_eq!(hub.group_len("room"), 1);
    hub.send_to_group("room", "to the room");
    hub.send_to_all(END);
    assert_eq!(texts_until_end(&mut client), ["welcome", "to the room"]);
    drop(client);
    server.shutdown();
}
