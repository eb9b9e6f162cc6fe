use super::*;
use axum::http::HeaderValue;

const PROXY: &str = "10.0.0.1";

fn trusted() -> TrustedProxies {
    TrustedProxies::new(&["10.0.0.0/8".parse().unwrap(), "2001:db8:ffff::/48".parse().unwrap()])
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The client a request from `peer` with `headers` comes from.
fn client_from(peer: &str, headers: &[(&str, &[u8])]) -> IpAddr {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        map.append(name, HeaderValue::from_bytes(value).unwrap());
    }
    client_address(ip(peer), &map, &trusted())
}

fn via_proxy(headers: &[(&str, &str)]) -> IpAddr {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    client_from(PROXY, &headers)
}

fn forwarded(value: &str) -> IpAddr {
    via_proxy(&[("forwarded", value)])
}

fn x_forwarded_for(value: &str) -> IpAddr {
    via_proxy(&[("x-forwarded-for", value)])
}

#[test]
fn an_untrusted_peer_is_the_client_whatever_it_sends() {
    let headers: &[(&str, &[u8])] = &[("x-forwarded-for", b"203.0.113.7"), ("forwarded", b"for=203.0.113.7")];
    assert_eq!(client_from("192.0.2.1", headers), ip("192.0.2.1"));
    // An IPv4-mapped peer is its IPv4 address, trusted or not.
    assert_eq!(client_from("::ffff:192.0.2.1", headers), ip("192.0.2.1"));
    assert_eq!(client_from("::ffff:10.0.0.1", headers), ip("203.0.113.7"));
    // Without --trusted-proxies nobody is trusted.
    let mut map = HeaderMap::new();
    map.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
    assert_eq!(client_address(ip(PROXY), &map, &TrustedProxies::default()), ip(PROXY));
}

#[test]
fn a_trusted_peer_without_headers_is_the_client() {
    assert_eq!(via_proxy(&[]), ip(PROXY));
}

#[test]
fn x_forwarded_for_is_read_from_the_right_past_trusted_proxies() {
    for (header, client) in [
        ("203.0.113.7", "203.0.113.7"),
        // What the client wrote itself is left of its own address, and never read.
        ("198.51.100.9, 203.0.113.7", "203.0.113.7"),
        ("garbage, 203.0.113.7, 10.1.2.3", "203.0.113.7"),
        ("203.0.113.7,10.1.2.3,,10.0.0.9 ", "203.0.113.7"),
        // Ports and brackets, as some proxies write them; IPv4-mapped addresses as IPv4.
        ("203.0.113.7:4711", "203.0.113.7"),
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("[2001:db8::7]:4711, 2001:db8:ffff::1", "2001:db8::7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
    ] {
        assert_eq!(x_forwarded_for(header), ip(client), "X-Forwarded-For: {header:?}");
    }
    // Several lines are one list, in order.
    let lines =
        via_proxy(&[("x-forwarded-for", "198.51.100.9"), ("x-forwarded-for", "203.0.113.7, 10.9.9.9")]);
    assert_eq!(lines, ip("203.0.113.7"));
}

#[test]
fn forwarded_for_is_read_in_its_quoted_ipv6_and_port_forms() {
    for (header, client) in [
        ("for=203.0.113.7", "203.0.113.7"),
        ("For=\"203.0.113.7\"", "203.0.113.7"),
        ("for=\"203.0.113.7:4711\"", "203.0.113.7"),
        ("for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"),
        ("for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
        ("for=203.0.113.7;proto=https;by=10.0.0.1;host=\"a.example\"", "203.0.113.7"),
        ("proto=https; for=203.0.113.7", "203.0.113.7"),
        // Quoted pairs.
        ("for=\"\\2\\03.0.113.7\"", "203.0.113.7"),
    ] {
        assert_eq!(forwarded(header), ip(client), "Forwarded: {header:?}");
    }
}

#[test]
fn forwarded_hops_are_read_from_the_right_past_trusted_proxies() {
    for (header, client) in [
        ("for=198.51.100.9, for=203.0.113.7", "203.0.113.7"),
        ("for=198.51.100.9, for=203.0.113.7;proto=https, for=10.2.3.4", "203.0.113.7"),
        ("for=203.0.113.7, for=\"[2001:db8:ffff::9]:80\"", "203.0.113.7"),
        // Elements the client made up left of its own are never read, however broken their meaning.
        ("for=unknown, for=_hidden, for=203.0.113.7", "203.0.113.7"),
        // Empty elements are skipped.
        (",for=203.0.113.7,", "203.0.113.7"),
    ] {
        assert_eq!(forwarded(header), ip(client), "Forwarded: {header:?}");
    }
    let lines = via_proxy(&[("forwarded", "for=198.51.100.9"), ("forwarded", "for=203.0.113.7")]);
    assert_eq!(lines, ip("203.0.113.7"));
}

#[test]
fn unreadable_headers_give_the_proxys_address() {
    let proxy = ip(PROXY);
    for garbage in [
        "",
        " ",
        ",",
        "unknown",
        "203.0.113.7, unknown",
        "203.0.113.7, example.com",
        "203.0.113.7 10.0.0.2",
        "fe80::1%eth0",
        "[203.0.113.7]",
        "203.0.113.7:99999",
        "2001:db8::7:4711]",
    ] {
        assert_eq!(x_forwarded_for(garbage), proxy, "X-Forwarded-For: {garbage:?}");
    }
    for garbage in [
        "",
        "for=",
        "for",
        "=203.0.113.7",
        "for=\"203.0.113.7",
        "for=203.0.113.7;for=198.51.100.9",
        "for=unknown",
        "for=_hidden",
        "for=\"_gazonk\"",
        "proto=https",
        "for=203.0.113.7, proto=https",
        "for=203.0.113.7 for=198.51.100.9",
        "for=203.0.113.7\"",
        "for=\"203.0.113.7\"x",
        "f\u{f6}r=203.0.113.7",
        "for=\"[2001:db8::7\"",
        "for=203.0.113.7,; ;,for=\"\\\"",
    ] {
        assert_eq!(forwarded(garbage), proxy, "Forwarded: {garbage:?}");
    }
    // Not text at all.
    assert_eq!(client_from(PROXY, &[("x-forwarded-for", b"203.0.113.7\xff")]), proxy);
    assert_eq!(client_from(PROXY, &[("forwarded", b"for=\xff")]), proxy);
    // One line unreadable makes the whole list so.
    assert_eq!(
        client_from(PROXY, &[("x-forwarded-for", b"\xff"), ("x-forwarded-for", b"203.0.113.7")]),
        proxy
    );
}

#[test]
fn a_list_of_trusted_proxies_only_names_no_client() {
    // Nobody untrusted: the proxy's own request, or a chain of proxies.
    assert_eq!(x_forwarded_for("10.3.3.3, 10.2.2.2"), ip(PROXY));
    // Then the other header may name the client: a proxy that rewrote `Forwarded` with its own
    // peer, a load balancer in front of it that keeps `X-Forwarded-For`.
    let layered = via_proxy(&[("forwarded", "for=10.2.2.2"), ("x-forwarded-for", "203.0.113.7, 10.2.2.2")]);
    assert_eq!(layered, ip("203.0.113.7"));
}

#[test]
fn both_headers_must_agree() {
    let agree = via_proxy(&[("forwarded", "for=203.0.113.7"), ("x-forwarded-for", "203.0.113.7")]);
    assert_eq!(agree, ip("203.0.113.7"));
    // A proxy that appends to one passes the other on as the client wrote it: which one is the
    // proxy's cannot be told, so neither is believed.
    let spoofed = via_proxy(&[("forwarded", "for=198.51.100.9"), ("x-forwarded-for", "203.0.113.7")]);
    assert_eq!(spoofed, ip(PROXY));
    let broken = via_proxy(&[("forwarded", "for=\"oops"), ("x-forwarded-for", "203.0.113.7")]);
    assert_eq!(broken, ip(PROXY));
}

#[test]
fn trusted_networks_match_mapped_addresses_as_their_ipv4() {
    let trusted = trusted();
    assert!(trusted.contains(ip("10.255.0.1")));
    assert!(trusted.contains(ip("::ffff:10.255.0.1")));
    assert!(trusted.contains(ip("2001:db8:ffff:1::1")));
    assert!(!trusted.contains(ip("2001:db8:fffe::1")));
    assert!(!trusted.contains(ip("11.0.0.1")));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

    /// Whatever the headers hold, no panic, and the client is the proxy itself or an address that
    /// is not a trusted proxy's; an untrusted peer is always its own client.
    #[test]
    fn arbitrary_headers_name_the_peer_or_an_untrusted_client(
        forwarded in proptest::option::of("[0-9a-fA-F:.\\[\\]\" ,;=_forFORunkw\\\\\t]{0,80}"),
        x_forwarded_for in proptest::option::of("[0-9a-f:.\\[\\] ,%]{0,80}|.{0,40}"),
        peer in proptest::sample::select(vec!["10.0.0.1", "::ffff:10.9.9.9", "2001:db8:ffff::1", "192.0.2.1"]),
    ) {
        let mut map = HeaderMap::new();
        for (name, value) in [("forwarded", &forwarded), ("x-forwarded-for", &x_forwarded_for)] {
            if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                map.append(HeaderName::from_static(name), value);
            }
        }
        let peer = ip(peer);
        let client = client_address(peer, &map, &trusted());
        if trusted().contains(peer) {
            proptest::prop_assert!(client == peer.to_canonical() || !trusted().contains(client), "{client}");
        } else {
            proptest::prop_assert_eq!(client, peer);
        }
    }

    /// What a client writes in X-Forwarded-For before the proxy appends its address is never taken.
    #[test]
    fn nothing_a_client_writes_before_the_proxys_entry_is_taken(prefix in "[ -~]{0,80}") {
        proptest::prop_assert_eq!(x_forwarded_for(&format!("{prefix},203.0.113.7")), ip("203.0.113.7"));
        proptest::prop_assert_eq!(x_forwarded_for(&format!("{prefix}, 203.0.113.7, 10.1.1.1")), ip("203.0.113.7"));
    }
}
