//! SIP URIs as the rest of the product needs them: where a Contact or a
//! configured target can be reached.

use std::net::{IpAddr, SocketAddr};

/// `sip:1001@127.0.0.1:5070;transport=udp` → 127.0.0.1:5070 (IP hosts only;
/// port 5060 when none is given). `None` for other schemes and host names.
pub fn host_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri.trim().trim_start_matches('<').strip_prefix("sip:")?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split([';', '>', '?']).next()?;
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Some(a);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 5060))
}

#[cfg(test)]
mod tests {
    use super::host_addr;

    #[test]
    fn contacts_resolve_to_ip_addresses() {
        assert_eq!(host_addr("sip:1001@127.0.0.1:5070"), Some("127.0.0.1:5070".parse().unwrap()));
        assert_eq!(host_addr("<sip:1001@127.0.0.1:5070;transport=udp>"), Some("127.0.0.1:5070".parse().unwrap()));
        assert_eq!(host_addr("sip:1001@127.0.0.1"), Some("127.0.0.1:5060".parse().unwrap()));
        assert_eq!(host_addr("sip:1001@[::1]:5070"), Some("[::1]:5070".parse().unwrap()));
        assert_eq!(host_addr("sip:1001@phone.example"), None);
        assert_eq!(host_addr("tel:1001"), None);
        assert_eq!(host_addr("sip:"), None);
    }
}
