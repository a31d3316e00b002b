use super::*;

fn binding_request(username: &str) -> Vec<u8> {
    let mut attr = Vec::new();
    attr.extend_from_slice(&STUN_ATTR_USERNAME.to_be_bytes());
    attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attr.extend_from_slice(username.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    // A PRIORITY attribute first, to check that we skip attributes.
    let mut body = vec![0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4];
    body.extend(attr);
    let mut packet = vec![0x00, 0x01];
    packet.extend_from_slice(&(body.len() as u16).to_be_bytes());
    packet.extend_from_slice(&STUN_MAGIC_COOKIE);
    packet.extend_from_slice(&[7; 12]);
    packet.extend(body);
    packet
}

#[test]
fn reads_our_ufrag_from_stun_username() {
    let packet = binding_request("srv1:cli2");
    assert!(is_stun(&packet));
    assert_eq!(server_ufrag(&packet), Some("srv1"));
}

#[test]
fn malformed_stun_is_not_routed() {
    assert_eq!(server_ufrag(&[]), None);
    // RTP (version 2) is not STUN.
    assert_eq!(server_ufrag(&[0x80; 40]), None);
    let mut truncated = binding_request("srv1:cli2");
    truncated.truncate(30);
    assert_eq!(server_ufrag(&truncated), None);
    let mut no_colon = binding_request("srv1cli2");
    no_colon.truncate(no_colon.len());
    assert_eq!(server_ufrag(&no_colon), None);
    // A length field pointing past the end.
    let mut lying = binding_request("srv1:cli2");
    lying[2] = 0xff;
    assert_eq!(server_ufrag(&lying), None);
}
