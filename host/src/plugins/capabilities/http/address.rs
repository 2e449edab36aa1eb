//! What kind of destination an IP address is: the one place that decides whether a plugin's
//! outbound HTTP request may go to an address.
//!
//! A plugin may only reach ordinary public unicast addresses unless the operator sets
//! `[http] allow_private = true`; everything else (loopback, private networks, link-local
//! addresses such as the cloud metadata endpoint `169.254.169.254`, multicast,
//! documentation and reserved space, ...) is refused. [`classify`] names the range an address
//! falls in, following the IANA IPv4 and IPv6 special-purpose address registries, so the
//! error a plugin sees can say *why* a destination was refused.
//!
//! **Embedded IPv4 addresses are unwrapped and classified as the IPv4 address they carry.**
//! Several IPv6 forms are just another spelling of an IPv4 destination: the kernel delivers
//! an IPv4-mapped address (`::ffff:127.0.0.1`) on a dual-stack socket to the IPv4 host, a
//! NAT64 gateway forwards `64:ff9b::a9fe:a9fe` to `169.254.169.254`, a 6to4 relay sends
//! `2002:0a00:0001::` to `10.0.0.1`, and old stacks treat the deprecated IPv4-compatible
//! `::10.0.0.1` the same way. Judging those by their IPv6 prefix alone would let a plugin
//! (or a DNS AAAA record it controls) reach an internal IPv4 host by writing it in IPv6, so
//! the embedded IPv4 address decides, and keeps its own class (`::ffff:10.0.0.1` is
//! [`AddressClass::Private`], not some IPv6 category). Teredo is the exception: its client
//! address is obfuscated and the path goes through a third-party relay, so Teredo addresses
//! are refused as a class of their own.
//!
//! The rules are ordered tables of prefixes; the first (most specific) match wins. Only the
//! IPv4 space outside every listed range, and the IPv6 global unicast space `2000::/3`
//! outside every listed range, is public.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The special-purpose range an address belongs to, or [`AddressClass::Public`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressClass {
    /// An ordinary globally routed unicast address: the only class a plugin may reach
    /// without `allow_private`.
    Public,
    /// `0.0.0.0` and `::`: "no address"; connecting to it reaches the local host on most
    /// systems.
    Unspecified,
    /// `127.0.0.0/8` and `::1`: this host.
    Loopback,
    /// RFC 1918 networks (`10/8`, `172.16/12`, `192.168/16`) and the local-use NAT64
    /// prefix `64:ff9b:1::/48` (RFC 8215), which only makes sense inside one network.
    Private,
    /// `100.64.0.0/10` (RFC 6598): carrier-grade NAT space, internal to an ISP or cloud.
    SharedCgnat,
    /// `169.254.0.0/16` and `fe80::/10`: the local link only (includes cloud metadata
    /// services).
    LinkLocal,
    /// `fc00::/7` (RFC 4193): IPv6's private networks.
    UniqueLocal,
    /// `fec0::/10`: deprecated IPv6 site-local space (RFC 3879); some networks still route it
    /// internally.
    SiteLocal,
    /// `224.0.0.0/4` and `ff00::/8`.
    Multicast,
    /// `255.255.255.255`: limited broadcast.
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`:
    /// for examples only, never routed.
    Documentation,
    /// `198.18.0.0/15` and `2001:2::/48`: network benchmarking, often used inside labs.
    Benchmarking,
    /// Anything set aside and not otherwise named: `240.0.0.0/4`, the deprecated 6to4 relay
    /// anycast `192.88.99.0/24`, ORCHID `2001:10::/28` and ORCHIDv2 `2001:20::/28`,
    /// IPv4-compatible IPv6 addresses carrying a public IPv4 address, and every IPv6 address
    /// outside `2000::/3` that no other rule covers.
    Reserved,
    /// `0.0.0.0/8` other than `0.0.0.0`: "this network" (RFC 791), never a destination.
    ThisNetwork,
    /// IETF protocol assignments: `192.0.0.0/24` and the rest of `2001::/23` not named
    /// above (anycast service addresses such as PCP and TURN, AMT, Drone Remote ID), none of
    /// which an HTTP request has any business with.
    ProtocolAssignments,
    /// `2001::/32` (RFC 4380): Teredo tunnelling; the client's IPv4 address is obfuscated
    /// and the traffic goes through a relay, so it is never a plain public destination.
    Teredo,
    /// `100::/64` (RFC 6666): discard-only, a black hole.
    Discard,
}

impl AddressClass {
    /// Whether an address of this class may be reached without `allow_private`.
    pub(crate) fn is_public(self) -> bool {
        self == Self::Public
    }

    /// A short lowercase description for error messages and logs; it reads as the adjective
    /// in "a … address" ("a loopback address", "a shared (CGNAT) address").
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedCgnat => "shared (CGNAT)",
            Self::LinkLocal => "link-local",
            Self::UniqueLocal => "unique-local",
            Self::SiteLocal => "site-local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Reserved => "reserved",
            Self::ThisNetwork => "this-network",
            Self::ProtocolAssignments => "protocol-assignment",
            Self::Teredo => "Teredo",
            Self::Discard => "discard-only",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of `ip`; see the module documentation for how embedded IPv4 addresses count.
pub(crate) fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// IPv4 special-purpose ranges as (network octets, prefix length, class). Checked in order
/// and the first match wins, so a single address inside a wider range (`0.0.0.0` in
/// `0.0.0.0/8`, `255.255.255.255` in `240.0.0.0/4`) comes before it. Whatever matches nothing
/// is public.
const V4_RANGES: &[([u8; 4], u32, AddressClass)] = {
    use AddressClass::*;
    &[
        ([0, 0, 0, 0], 32, Unspecified),
        ([0, 0, 0, 0], 8, ThisNetwork),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        // The whole /24, including the few globally reachable anycast addresses in it
        // (192.0.0.9 PCP, 192.0.0.10 TURN): no plugin needs them, and refusing is the safe
        // side.
        ([192, 0, 0, 0], 24, ProtocolAssignments),
        ([192, 0, 2, 0], 24, Documentation),
        // 6to4 relay anycast, deprecated by RFC 7526: nothing should be served there.
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ]
};

/// What an IPv6 prefix means.
#[derive(Debug, Clone, Copy)]
enum V6Rule {
    /// The prefix is this class, whatever the rest of the address.
    Is(AddressClass),
    /// The last 32 bits are an IPv4 address that the packet really goes to (IPv4-mapped,
    /// NAT64 well-known prefix): classify that.
    Low32,
    /// Deprecated IPv4-compatible `::a.b.c.d`: classify the IPv4 address, but never call the
    /// result public, since nothing legitimate uses this form any more.
    Compatible,
    /// 6to4 `2002:AABB:CCDD::/48`: the IPv4 address in bits 16..48 is the tunnel endpoint.
    SixToFour,
}

/// IPv6 special-purpose ranges as (network segments, prefix length, rule), first match wins:
/// exact addresses and narrow ranges come before the wider ranges that contain them. The
/// last two rows make `2000::/3` (global unicast) public and everything else reserved.
const V6_RANGES: &[([u16; 8], u32, V6Rule)] = {
    use AddressClass::*;
    use V6Rule::*;
    &[
        ([0, 0, 0, 0, 0, 0, 0, 0], 128, Is(Unspecified)),
        ([0, 0, 0, 0, 0, 0, 0, 1], 128, Is(Loopback)),
        ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, Low32),
        ([0, 0, 0, 0, 0, 0, 0, 0], 96, Compatible),
        ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, Low32),
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Is(Private)),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Is(Discard)),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, Is(Teredo)),
        ([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, Is(Benchmarking)),
        ([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, Is(Reserved)),
        ([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, Is(Reserved)),
        // The rest of the IETF protocol assignment block (after Teredo, benchmarking and
        // ORCHID), including its few globally reachable services: refused, like
        // 192.0.0.0/24.
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, Is(ProtocolAssignments)),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Is(Documentation)),
        ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, SixToFour),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Is(Documentation)),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, Is(UniqueLocal)),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, Is(LinkLocal)),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Is(SiteLocal)),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Is(Multicast)),
        ([0x2000, 0, 0, 0, 0, 0, 0, 0], 3, Is(Public)),
        ([0, 0, 0, 0, 0, 0, 0, 0], 0, Is(Reserved)),
    ]
};

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let bits = ip.to_bits();
    V4_RANGES
        .iter()
        .find(|&&(net, len, _)| bits & v4_mask(len) == Ipv4Addr::from(net).to_bits())
        .map_or(AddressClass::Public, |&(_, _, class)| class)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let bits = ip.to_bits();
    let rule = V6_RANGES
        .iter()
        .find(|&&(net, len, _)| bits & v6_mask(len) == Ipv6Addr::from(net).to_bits())
        .map_or(V6Rule::Is(AddressClass::Reserved), |&(_, _, rule)| rule);
    // The `as u32` casts keep exactly the 32 bits that hold the embedded address.
    match rule {
        V6Rule::Is(class) => class,
        V6Rule::Low32 => classify_v4(Ipv4Addr::from_bits(bits as u32)),
        V6Rule::Compatible => match classify_v4(Ipv4Addr::from_bits(bits as u32)) {
            AddressClass::Public => AddressClass::Reserved,
            class => class,
        },
        V6Rule::SixToFour => classify_v4(Ipv4Addr::from_bits((bits >> 80) as u32)),
    }
}

/// The network mask of an IPv4 prefix of `len` bits (`len` ≤ 32).
fn v4_mask(len: u32) -> u32 {
    // A shift by the full width overflows, and a /0 prefix matches everything.
    u32::MAX.checked_shl(32 - len).unwrap_or(0)
}

/// The network mask of an IPv6 prefix of `len` bits (`len` ≤ 128).
fn v6_mask(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::AddressClass::{self, *};
    use super::{V4_RANGES, V6_RANGES, classify, v4_mask, v6_mask};
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// Every class, in declaration order.
    const ALL: [AddressClass; 17] = [
        Public,
        Unspecified,
        Loopback,
        Private,
        SharedCgnat,
        LinkLocal,
        UniqueLocal,
        SiteLocal,
        Multicast,
        Broadcast,
        Documentation,
        Benchmarking,
        Reserved,
        ThisNetwork,
        ProtocolAssignments,
        Teredo,
        Discard,
    ];

    /// The position of `class` in `ALL`. The match has no wildcard, so a new variant does not
    /// compile until it is added here, which is the reminder to add it to `ALL` (checked by
    /// `all_lists_every_class`) and to the table.
    fn position(class: AddressClass) -> usize {
        match class {
            Public => 0,
            Unspecified => 1,
            Loopback => 2,
            Private => 3,
            SharedCgnat => 4,
            LinkLocal => 5,
            UniqueLocal => 6,
            SiteLocal => 7,
            Multicast => 8,
            Broadcast => 9,
            Documentation => 10,
            Benchmarking => 11,
            Reserved => 12,
            ThisNetwork => 13,
            ProtocolAssignments => 14,
            Teredo => 15,
            Discard => 16,
        }
    }

    /// (address, expected class): the first and last address of every range, the
    /// neighbours just outside it, each embedding with private, loopback and public IPv4
    /// addresses, and ordinary public addresses.
    const TABLE: &[(&str, AddressClass)] = &[
        // --- IPv4 ---
        // 0.0.0.0/8 this network, 0.0.0.0 unspecified.
        ("0.0.0.0", Unspecified),
        ("0.0.0.1", ThisNetwork),
        ("0.255.255.255", ThisNetwork),
        ("1.0.0.0", Public),
        // 10/8 private.
        ("9.255.255.255", Public),
        ("10.0.0.0", Private),
        ("10.1.2.3", Private),
        ("10.255.255.255", Private),
        ("11.0.0.0", Public),
        // 100.64/10 shared (CGNAT).
        ("100.63.255.255", Public),
        ("100.64.0.0", SharedCgnat),
        ("100.127.255.255", SharedCgnat),
        ("100.128.0.0", Public),
        // 127/8 loopback.
        ("126.255.255.255", Public),
        ("127.0.0.0", Loopback),
        ("127.0.0.1", Loopback),
        ("127.255.255.255", Loopback),
        ("128.0.0.0", Public),
        // 169.254/16 link-local.
        ("169.253.255.255", Public),
        ("169.254.0.0", LinkLocal),
        ("169.254.169.254", LinkLocal),
        ("169.254.255.255", LinkLocal),
        ("169.255.0.0", Public),
        // 172.16/12 private.
        ("172.15.255.255", Public),
        ("172.16.0.0", Private),
        ("172.31.255.255", Private),
        ("172.32.0.0", Public),
        // 192.0.0.0/24 protocol assignments (including its anycast addresses).
        ("191.255.255.255", Public),
        ("192.0.0.0", ProtocolAssignments),
        ("192.0.0.9", ProtocolAssignments),
        ("192.0.0.170", ProtocolAssignments),
        ("192.0.0.255", ProtocolAssignments),
        ("192.0.1.0", Public),
        // 192.0.2.0/24 documentation (TEST-NET-1).
        ("192.0.1.255", Public),
        ("192.0.2.0", Documentation),
        ("192.0.2.255", Documentation),
        ("192.0.3.0", Public),
        // 192.88.99.0/24 deprecated 6to4 relay anycast.
        ("192.88.98.255", Public),
        ("192.88.99.0", Reserved),
        ("192.88.99.255", Reserved),
        ("192.88.100.0", Public),
        // 192.168/16 private.
        ("192.167.255.255", Public),
        ("192.168.0.0", Private),
        ("192.168.1.1", Private),
        ("192.168.255.255", Private),
        ("192.169.0.0", Public),
        // 198.18.0.0/15 benchmarking.
        ("198.17.255.255", Public),
        ("198.18.0.0", Benchmarking),
        ("198.19.255.255", Benchmarking),
        ("198.20.0.0", Public),
        // 198.51.100.0/24 documentation (TEST-NET-2).
        ("198.51.99.255", Public),
        ("198.51.100.0", Documentation),
        ("198.51.100.255", Documentation),
        ("198.51.101.0", Public),
        // 203.0.113.0/24 documentation (TEST-NET-3).
        ("203.0.112.255", Public),
        ("203.0.113.0", Documentation),
        ("203.0.113.255", Documentation),
        ("203.0.114.0", Public),
        // 224/4 multicast.
        ("223.255.255.255", Public),
        ("224.0.0.0", Multicast),
        ("239.255.255.255", Multicast),
        // 240/4 reserved, 255.255.255.255 broadcast.
        ("240.0.0.0", Reserved),
        ("255.255.255.254", Reserved),
        ("255.255.255.255", Broadcast),
        // Ordinary public IPv4, and globally reachable special-purpose ranges (AS112, AMT).
        ("1.1.1.1", Public),
        ("8.8.8.8", Public),
        ("93.184.216.34", Public),
        ("192.31.196.1", Public),
        ("192.52.193.1", Public),
        // --- IPv6 ---
        // ::/128 unspecified, ::1 loopback.
        ("::", Unspecified),
        ("::1", Loopback),
        // IPv4-compatible ::/96 (minus :: and ::1): the IPv4 class, public becoming reserved.
        ("::2", ThisNetwork),
        ("::10.0.0.1", Private),
        ("::192.168.1.1", Private),
        ("::127.0.0.1", Loopback),
        ("::169.254.169.254", LinkLocal),
        ("::8.8.8.8", Reserved),
        ("::1.1.1.1", Reserved),
        ("::255.255.255.255", Broadcast),
        ("::1:0:0", Reserved),
        // IPv4-mapped ::ffff:0:0/96: the IPv4 class.
        ("::fffe:ffff:ffff", Reserved),
        ("::ffff:0.0.0.0", Unspecified),
        ("::ffff:10.0.0.1", Private),
        ("::ffff:127.0.0.1", Loopback),
        ("::ffff:169.254.169.254", LinkLocal),
        ("::ffff:100.64.0.1", SharedCgnat),
        ("::ffff:8.8.8.8", Public),
        ("::ffff:93.184.216.34", Public),
        ("::ffff:255.255.255.255", Broadcast),
        ("::1:0:0:0", Reserved),
        // SIIT's IPv4-translated ::ffff:0:0:0/96 is not unwrapped: reserved.
        ("::ffff:0:10.0.0.1", Reserved),
        ("::ffff:0:8.8.8.8", Reserved),
        // NAT64 well-known prefix 64:ff9b::/96: the IPv4 class.
        ("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("64:ff9b::", Unspecified),
        ("64:ff9b::10.0.0.1", Private),
        ("64:ff9b::127.0.0.1", Loopback),
        ("64:ff9b::a9fe:a9fe", LinkLocal),
        ("64:ff9b::8.8.8.8", Public),
        ("64:ff9b::255.255.255.255", Broadcast),
        ("64:ff9b::1:0:0", Reserved),
        ("64:ff9b:0:ffff:ffff:ffff:ffff:ffff", Reserved),
        // Local-use NAT64 64:ff9b:1::/48: private, whatever IPv4 address it carries.
        ("64:ff9b:1::", Private),
        ("64:ff9b:1::8.8.8.8", Private),
        ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", Private),
        ("64:ff9b:2::", Reserved),
        // Discard-only 100::/64.
        ("ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("100::", Discard),
        ("100::ffff:ffff:ffff:ffff", Discard),
        ("100:0:0:1::", Reserved),
        // Teredo 2001::/32.
        ("2000::", Public),
        ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
        ("2001::", Teredo),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Teredo),
        ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Teredo),
        // The rest of 2001::/23, IETF protocol assignments.
        ("2001:1::", ProtocolAssignments),
        ("2001:1::1", ProtocolAssignments),
        ("2001:1:ffff:ffff:ffff:ffff:ffff:ffff", ProtocolAssignments),
        // Benchmarking 2001:2::/48.
        ("2001:2::", Benchmarking),
        ("2001:2:0:ffff:ffff:ffff:ffff:ffff", Benchmarking),
        ("2001:2:1::", ProtocolAssignments),
        ("2001:3::1", ProtocolAssignments),
        // ORCHID 2001:10::/28, ORCHIDv2 2001:20::/28.
        ("2001:f:ffff:ffff:ffff:ffff:ffff:ffff", ProtocolAssignments),
        ("2001:10::", Reserved),
        ("2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("2001:20::", Reserved),
        ("2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("2001:30::", ProtocolAssignments),
        (
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            ProtocolAssignments,
        ),
        ("2001:200::", Public),
        // Documentation 2001:db8::/32.
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", Public),
        ("2001:db8::", Documentation),
        ("2001:db8::1", Documentation),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Documentation),
        ("2001:db9::", Public),
        // 6to4 2002::/16: the IPv4 class of bits 16..48.
        ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
        ("2002::", Unspecified),
        ("2002:a00:1::", Private),
        ("2002:c0a8:101::1", Private),
        ("2002:7f00:1::", Loopback),
        ("2002:7f00:1:ffff:ffff:ffff:ffff:ffff", Loopback),
        ("2002:a9fe:a9fe::1", LinkLocal),
        ("2002:808:808::", Public),
        ("2002:5db8:d822:1::1", Public),
        ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Broadcast),
        ("2003::", Public),
        // Documentation 3fff::/20, and the end of global unicast 2000::/3.
        ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
        ("3fff::", Documentation),
        ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", Documentation),
        ("3fff:1000::", Public),
        ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
        ("4000::", Reserved),
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        // Outside 2000::/3 and unlisted: reserved (e.g. SRv6 SIDs 5f00::/16).
        ("5f00::1", Reserved),
        ("8000::1", Reserved),
        // Unique-local fc00::/7.
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("fc00::", UniqueLocal),
        ("fd00::1", UniqueLocal),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", UniqueLocal),
        ("fe00::", Reserved),
        // Link-local fe80::/10.
        ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("fe80::", LinkLocal),
        ("fe80::1", LinkLocal),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LinkLocal),
        // Site-local fec0::/10 (deprecated).
        ("fec0::", SiteLocal),
        ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", SiteLocal),
        // Multicast ff00::/8.
        ("ff00::", Multicast),
        ("ff02::1", Multicast),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Multicast),
        // Ordinary public IPv6, and the globally reachable AS112 direct delegation.
        ("2606:4700::1111", Public),
        ("2a00:1450::1", Public),
        ("2001:4860:4860::8888", Public),
        ("2620:4f:8000::1", Public),
    ];

    fn parse(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} in the table is not an IP address: {e}"))
    }

    #[test]
    fn table() {
        let failures: Vec<String> = TABLE
            .iter()
            .filter_map(|&(s, expected)| {
                let got = classify(parse(s));
                (got != expected).then(|| format!("{s}: expected {expected:?}, got {got:?}"))
            })
            .collect();
        assert!(
            failures.is_empty(),
            "misclassified:\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn table_has_no_duplicates_and_covers_every_class() {
        let mut seen = HashSet::new();
        for &(s, _) in TABLE {
            assert!(seen.insert(parse(s)), "{s} is in the table twice");
        }
        for class in ALL {
            assert!(
                TABLE.iter().any(|&(_, c)| c == class),
                "no table row expects {class:?}"
            );
        }
    }

    #[test]
    fn all_lists_every_class() {
        for (i, class) in ALL.into_iter().enumerate() {
            assert_eq!(position(class), i, "{class:?}");
        }
    }

    #[test]
    fn only_public_is_public() {
        for class in ALL {
            assert_eq!(class.is_public(), class == Public, "{class:?}");
        }
    }

    #[test]
    fn descriptions_are_distinct() {
        let mut seen = HashSet::new();
        for class in ALL {
            let s = class.as_str();
            assert!(!s.is_empty(), "{class:?}");
            assert!(seen.insert(s), "{class:?} shares the description {s:?}");
            assert_eq!(class.to_string(), s);
        }
    }

    #[test]
    fn ranges_are_well_formed() {
        for &(net, len, class) in V4_RANGES {
            let net = Ipv4Addr::from(net);
            assert!(len <= 32, "{net}/{len}");
            assert_eq!(
                net.to_bits() & !v4_mask(len),
                0,
                "{net}/{len} ({class:?}) has host bits"
            );
        }
        for &(net, len, rule) in V6_RANGES {
            let net = Ipv6Addr::from(net);
            assert!(len <= 128, "{net}/{len}");
            assert_eq!(
                net.to_bits() & !v6_mask(len),
                0,
                "{net}/{len} ({rule:?}) has host bits"
            );
        }
    }

    /// IPv4 addresses to try in every embedding: a stride through the whole space (65_521 is
    /// prime, so the samples land on varied octets) plus every IPv4 row of the table, which
    /// sit on range boundaries.
    fn v4_samples() -> Vec<Ipv4Addr> {
        let mut samples: Vec<Ipv4Addr> = (0..=u32::MAX)
            .step_by(65_521)
            .map(Ipv4Addr::from_bits)
            .collect();
        samples.push(Ipv4Addr::BROADCAST);
        samples.extend(TABLE.iter().filter_map(|&(s, _)| match parse(s) {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }));
        samples
    }

    #[test]
    fn embedded_ipv4_classifies_like_the_ipv4_address() {
        for v4 in v4_samples() {
            let expected = classify(IpAddr::V4(v4));
            let bits = u128::from(v4.to_bits());
            let mapped = Ipv6Addr::from_bits(0xffff_u128 << 32 | bits);
            let nat64 = Ipv6Addr::from_bits(0x0064_ff9b_u128 << 96 | bits);
            // Arbitrary subnet and interface bits: only the IPv4 address may matter.
            let six_to_four =
                Ipv6Addr::from_bits(0x2002_u128 << 112 | bits << 80 | 0x1234_5678_9abc_def0_u128);
            for v6 in [mapped, nat64, six_to_four] {
                assert_eq!(classify(IpAddr::V6(v6)), expected, "{v6} (embedding {v4})");
            }
            // `::` and `::1` are themselves, not IPv4-compatible addresses.
            if v4.to_bits() > 1 {
                let compatible = Ipv6Addr::from_bits(bits);
                let expected = if expected == Public {
                    Reserved
                } else {
                    expected
                };
                assert_eq!(classify(IpAddr::V6(compatible)), expected, "{compatible}");
            }
        }
    }

    /// Outside `2000::/3` only the IPv4-mapped and NAT64 well-known spellings of a public
    /// IPv4 address may be public.
    #[test]
    fn nothing_else_outside_global_unicast_is_public() {
        let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0).to_bits();
        for first in 0..=u16::MAX {
            if (0x2000..=0x3fff).contains(&first) {
                continue;
            }
            let prefix = u128::from(first) << 112;
            for tail in [0, 1, 0x0808_0808, 0xffff_0808_0808, u128::MAX >> 16] {
                let ip = Ipv6Addr::from_bits(prefix | tail);
                let embeds_v4 = ip.to_ipv4_mapped().is_some() || ip.to_bits() >> 32 == nat64 >> 32;
                assert!(embeds_v4 || !classify(IpAddr::V6(ip)).is_public(), "{ip}");
            }
        }
        let nat64_public = Ipv6Addr::from_bits(nat64 | 0x0808_0808);
        assert!(classify(IpAddr::V6(nat64_public)).is_public());
    }
}
