//! The address a request comes from, for the per-address rate limits and the logs. Behind a load
//! balancer or an ingress, every connection comes from the proxy; the proxy names the client in
//! `X-Forwarded-For`. That header is believed only from proxies the configuration trusts
//! (`http.trusted_proxies`), and then read from the right: the first address that is not itself a
//! trusted proxy is the client. Anyone may write anything in the header, so an address a client
//! wrote on the left of it never counts, and from an untrusted peer the header is ignored.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// Networks (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`) whose connections may name their client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Each entry an address or a network in CIDR notation.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let (addr, prefix) = match entry.split_once('/') {
                Some((addr, prefix)) => (addr, Some(prefix)),
                None => (entry, None),
            };
            let addr: IpAddr =
                addr.parse().map_err(|_| format!("`{entry}`: not an IP address or network"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(raw) => match raw.parse::<u8>() {
                    Ok(prefix) if prefix <= max => prefix,
                    _ => return Err(format!("`{entry}`: the prefix length must be 0 to {max}")),
                },
            };
            nets.push((addr, prefix));
        }
        Ok(TrustedProxies { nets })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|&(net, prefix)| match (canonical(net), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(&net.octets(), &ip.octets(), prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(&net.octets(), &ip.octets(), prefix),
            _ => false,
        })
    }

    /// The client of a request that arrived from `peer`: `peer` itself unless it is a trusted
    /// proxy, else the rightmost address of `X-Forwarded-For` that is not a trusted proxy (the
    /// leftmost when all are). A header that does not parse is not believed: `peer`.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self.contains(peer.ip()) {
            return peer;
        }
        let mut hops = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(value) = value.to_str() else { return peer };
            for hop in value.split(',') {
                match hop.trim().parse::<IpAddr>() {
                    Ok(ip) => hops.push(ip),
                    Err(_) => return peer,
                }
            }
        }
        let client = hops.iter().rev().find(|ip| !self.contains(**ip)).or(hops.first());
        client.map_or(peer, |ip| SocketAddr::new(canonical(*ip), peer.port()))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4 peers) as
/// the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    fn addr(raw: &str) -> SocketAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let trusted =
            TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.7", "fd00::/8", "172.16.0.0/12"]).unwrap();
        assert!(trusted.contains("10.200.3.4".parse().unwrap()));
        assert!(trusted.contains("192.168.1.7".parse().unwrap()));
        assert!(!trusted.contains("192.168.1.8".parse().unwrap()));
        assert!(trusted.contains("172.31.255.255".parse().unwrap()));
        assert!(!trusted.contains("172.32.0.1".parse().unwrap()));
        assert!(trusted.contains("fd12::1".parse().unwrap()));
        assert!(trusted.contains("::ffff:10.1.2.3".parse().unwrap()), "IPv4-mapped");
        assert!(!trusted.contains("2001:db8::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/", "::/129", "10.0.0.0/-1"] {
            assert!(TrustedProxies::parse(&[bad]).is_err(), "{bad}");
        }
        assert!(TrustedProxies::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let proxy = addr("10.0.0.5:4000");
        // A client behind two of our proxies.
        assert_eq!(
            trusted.client(proxy, &headers(&["203.0.113.9, 10.0.0.7"])).ip(),
            addr("203.0.113.9:1").ip()
        );
        // What a client writes on the left is not believed: our proxy appended the real one.
        assert_eq!(
            trusted.client(proxy, &headers(&["1.2.3.4, 198.51.100.2"])).ip(),
            addr("198.51.100.2:1").ip()
        );
        // Several header lines read as one list.
        assert_eq!(
            trusted.client(proxy, &headers(&["1.2.3.4", "198.51.100.3"])).ip(),
            addr("198.51.100.3:1").ip()
        );
        // Only proxies: the first of them.
        assert_eq!(trusted.client(proxy, &headers(&["10.1.1.1, 10.2.2.2"])).ip(), addr("10.1.1.1:1").ip());
        // No header, or one that does not parse: the proxy itself.
        assert_eq!(trusted.client(proxy, &HeaderMap::new()), proxy);
        assert_eq!(trusted.client(proxy, &headers(&["203.0.113.9, garbage"])), proxy);
        // From an untrusted peer the header is ignored.
        let stranger = addr("198.51.100.77:5000");
        assert_eq!(trusted.client(stranger, &headers(&["203.0.113.9"])), stranger);
        // Nothing trusted (the default): always the peer.
        assert_eq!(TrustedProxies::default().client(proxy, &headers(&["203.0.113.9"])), proxy);
    }
}
