/**
 * Outbound URL guard against server-side request forgery (SSRF). Every URL the service calls on
 * someone else's behalf (webhook targets now, a provider's base_url later) goes through
 * checkOutboundUrl, and the call itself through guardedFetch, so that a URL supplied by a tenant
 * cannot point the service at itself, at a private network, or at a cloud metadata endpoint.
 *
 * The module is pure: it parses with the WHATWG URL parser of the runtime and inspects literal
 * addresses only, with no network and no DNS. It cannot see DNS rebinding (a public name such as
 * 127.0.0.1.nip.io that resolves to a private address), because a Worker has no DNS API to resolve
 * a name before fetching it. That gap is acceptable because fetch() from a Worker runs on
 * Cloudflare's edge and cannot reach private networks or the host anyway: this guard is defence in
 * depth, and it keeps the same rules in force should the code ever run somewhere that can.
 *
 * Literal addresses are judged by what they are, not by how they are spelled. The WHATWG parser
 * (workerd's, as the tests check) already normalises decimal (2130706433), hex (0x7f.1), octal
 * (0177.0.0.1) and short (127.1) IPv4 hosts into dotted quads, and IPv6 hosts, dotted IPv4 tails
 * included, into compressed hex; the guard relies on that, but parses and classifies addresses with
 * ipaddr.js, which also reads the unnormalised IPv4 forms, so that a runtime whose parser normalised
 * differently would still be judged correctly.
 *
 * Only public unicast addresses pass: every ipaddr.js range() other than "unicast" is refused
 * (REFUSED_IPV4_RANGES and REFUSED_IPV6_RANGES give the reason for each, and a range a later
 * ipaddr.js adds is refused too), as are the cloud metadata addresses and, since ipaddr.js calls
 * everything it has no name for unicast, IPv6 outside the global unicast allocation 2000::/3. IPv6
 * addresses whose last 32 bits are an IPv4 address that the packet effectively goes to
 * (IPv4-mapped ::ffff:a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d, NAT64 64:ff9b::/96 and
 * IPv4-compatible ::a.b.c.d) are refused as ipv4_mapped when the embedded address is refused, and
 * allowed when it is public, because then they reach nothing that the plain IPv4 address would not.
 * 6to4 and Teredo addresses are refused whatever they embed (see refuseTransition).
 */
import ipaddr from "ipaddr.js";
import { LedgerError } from "../errors";

/**
 * Why a URL was refused. IPv6 multicast, documentation and other special-purpose ranges are reported
 * as private_ipv6; every 6to4 and Teredo address is reported as ipv4_mapped.
 */
export type UrlRejection =
  | "invalid_url"
  | "not_https"
  | "userinfo"
  | "localhost"
  | "loopback"
  | "private_ipv4"
  | "shared_ipv4"
  | "link_local"
  | "metadata"
  | "unspecified"
  | "reserved_ipv4"
  | "private_ipv6"
  | "ipv4_mapped"
  | "port_not_allowed"
  | "too_long";

export type UrlCheck = { ok: true; url: URL } | { ok: false; reason: UrlRejection; detail: string };

/** Longer URLs are refused: no legitimate webhook or provider URL needs more. */
export const OUTBOUND_URL_LENGTH_MAX = 2048;
/** The only scheme allowed, so that payloads and credentials never travel in clear text. */
export const OUTBOUND_URL_SCHEME = "https:";
/** The default port of https, which the URL parser reports as an empty port. */
export const HTTPS_DEFAULT_PORT = 443;
/** Explicit ports below this one (other than 443) belong to system services such as SSH and SMTP. */
export const OUTBOUND_PORT_MIN = 1024;
/** The reserved name for the local host (RFC 6761); every subdomain of it is local too. */
export const LOCALHOST_NAME = "localhost";
/** Host names under which cloud providers serve instance metadata and credentials. */
export const METADATA_HOSTNAMES: ReadonlySet<string> = new Set([
  "metadata.google.internal",
  "metadata",
  "instance-data",
]);

type Refusal = { reason: UrlRejection; detail: string };
type IPv4 = ipaddr.IPv4;
type IPv6 = ipaddr.IPv6;
type Cidr = [IPv6, number];

const HEX_PART = /^0x[0-9a-f]*$/i;
/** The only IPv4 tail the URL standard allows in an IPv6 host: four decimal parts, no leading zeros. */
const DOTTED_QUAD = /^(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}$/;
/** An unbracketed IPv6 address with a dotted IPv4 tail: what precedes the tail, the tail, the %zone. */
const IPV6_WITH_IPV4_TAIL = /^(.*:)([^:%]*\.[^:%]*)(%.*)?$/;

/** The cloud instance metadata address (AWS, GCP, Azure and others), inside the link-local range. */
const METADATA_IPV4 = "169.254.169.254";
/** The EC2 instance metadata service on IPv6, inside the unique-local range. */
const METADATA_IPV6 = ipaddr.IPv6.parse("fd00:ec2::254");
/** IANA's global unicast allocation; the rest of the IPv6 space is special-purpose or unassigned. */
const IPV6_GLOBAL_UNICAST: Cidr = ipaddr.IPv6.parseCIDR("2000::/3");

/**
 * What each ipaddr.js IPv4 range() is refused as. Every range but "unicast" is refused; one missing
 * here (a range a later ipaddr.js adds) is refused as reserved_ipv4.
 */
export const REFUSED_IPV4_RANGES: Readonly<Record<string, UrlRejection>> = {
  unspecified: "unspecified", // 0.0.0.0/8, "this network"
  loopback: "loopback", // 127.0.0.0/8
  private: "private_ipv4", // 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16
  carrierGradeNat: "shared_ipv4", // 100.64.0.0/10, which also holds Alibaba Cloud's metadata address
  linkLocal: "link_local", // 169.254.0.0/16
  broadcast: "reserved_ipv4", // 255.255.255.255
  multicast: "reserved_ipv4", // 224.0.0.0/4
  // 192.0.0.0/24, the TEST-NETs, the 6to4 relay anycast 192.88.99.0/24, benchmarking 198.18.0.0/15, 240.0.0.0/4.
  reserved: "reserved_ipv4",
  as112: "reserved_ipv4", // AS112 DNS sinks for reverse lookups of private addresses
  amt: "reserved_ipv4", // automatic multicast tunnelling relays
};

/**
 * What each ipaddr.js IPv6 range() is refused as. Every range but "unicast" is refused; one missing
 * here (a range a later ipaddr.js adds) is refused as private_ipv6. The ranges that embed an IPv4
 * address (ipv4Mapped, rfc6145, NAT64 in rfc6052, 6to4, teredo) are judged before this table.
 */
export const REFUSED_IPV6_RANGES: Readonly<Record<string, UrlRejection>> = {
  unspecified: "unspecified", // ::
  loopback: "loopback", // ::1
  linkLocal: "link_local", // fe80::/10
  uniqueLocal: "private_ipv6", // fc00::/7
  deprecatedSiteLocal: "private_ipv6", // fec0::/10
  multicast: "private_ipv6", // ff00::/8
  rfc6052: "private_ipv6", // local-use NAT64 64:ff9b:1::/48, whose embedding is up to its operator
  // 2001::/23 (IETF protocol assignments), documentation 2001:db8::/32 and 3fff::/20.
  reserved: "private_ipv6",
  discard: "private_ipv6", // 100::/64
  benchmarking: "private_ipv6", // 2001:2::/48
  amt: "private_ipv6", // 2001:3::/32
  as112v6: "private_ipv6",
  deprecatedOrchid: "private_ipv6",
  orchid2: "private_ipv6",
  droneRemoteIdProtocolEntityTags: "private_ipv6",
  segmentRouting: "private_ipv6", // 5f00::/16
};

/**
 * /96 prefixes whose last 32 bits are an IPv4 address that the packet effectively goes to. :: and
 * ::1 are inside the IPv4-compatible ::/96 but are judged as themselves, before these are consulted.
 */
const IPV6_EMBEDDINGS: readonly { prefix: Cidr; label: string }[] = [
  { prefix: ipaddr.IPv6.parseCIDR("::ffff:0:0/96"), label: "IPv4-mapped ::ffff:0:0/96" },
  { prefix: ipaddr.IPv6.parseCIDR("::ffff:0:0:0/96"), label: "IPv4-translated ::ffff:0:0:0/96" },
  { prefix: ipaddr.IPv6.parseCIDR("64:ff9b::/96"), label: "NAT64 64:ff9b::/96" },
  { prefix: ipaddr.IPv6.parseCIDR("::/96"), label: "IPv4-compatible ::/96" },
];

/** ipaddr.js throws on what it cannot parse; the guard wants null. */
function attempt<T>(parse: () => T): T | null {
  try {
    return parse();
  } catch {
    return null;
  }
}

/**
 * Parses an IPv4 host in any form the WHATWG URL standard accepts (one to four parts, each decimal,
 * hex or octal, the last filling the remaining bytes, and one trailing dot tolerated); null when the
 * host is not such an address.
 */
function ipv4Address(host: string): IPv4 | null {
  // The URL standard drops one trailing dot and reads an empty hex part "0x" as zero; ipaddr.js does neither.
  const trimmed = host.endsWith(".") ? host.slice(0, -1) : host;
  const parts = trimmed.split(".").map((part) => (/^0x$/i.test(part) ? "0" : part));
  return attempt(() => ipaddr.IPv4.parse(parts.join(".")));
}

/** Parses an IPv4 host as ipv4Address does, into an unsigned 32-bit number; null when it is not IPv4. */
export function parseIPv4Literal(host: string): number | null {
  const address = ipv4Address(host);
  return address === null ? null : address.octets.reduce((sum, octet) => sum * 256 + octet, 0);
}

/**
 * Parses an IPv6 address, optionally in brackets and optionally with a %zone id (which the guard
 * never sees: the URL standard refuses zones); null when it is invalid.
 */
function ipv6Address(input: string): IPv6 | null {
  let text = input.startsWith("[") && input.endsWith("]") ? input.slice(1, -1) : input;
  const tail = IPV6_WITH_IPV4_TAIL.exec(text);
  if (tail !== null) {
    // ipaddr.js would read ::a.b.c.d as ::ffff:a.b.c.d (another address) and take octal or hex parts,
    // so the tail is checked to the URL standard's rule here and handed over as two hex groups.
    const [, head = "", quad = "", zone = ""] = tail;
    const octets = DOTTED_QUAD.test(quad) ? ipv4Address(quad)?.octets : undefined;
    if (octets === undefined) return null;
    const [a = 0, b = 0, c = 0, d = 0] = octets;
    text = `${head}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}${zone}`;
  }
  return attempt(() => ipaddr.IPv6.parse(text));
}

/** The eight 16-bit groups of an IPv6 address (see ipv6Address), or null when it is invalid. */
export function parseIPv6Literal(input: string): number[] | null {
  const address = ipv6Address(input);
  return address === null ? null : [...address.parts];
}

/** The IPv4 address in the four bytes of an IPv6 address that start at offset. */
function ipv4At(bytes: readonly number[], offset: number): IPv4 {
  return new ipaddr.IPv4(bytes.slice(offset, offset + 4));
}

function classifyIPv4(address: IPv4): Refusal | null {
  const text = address.toString();
  if (text === METADATA_IPV4) return { reason: "metadata", detail: `IPv4 address ${text} is cloud instance metadata` };
  const range = address.range();
  if (range === "unicast") return null;
  return {
    reason: REFUSED_IPV4_RANGES[range] ?? "reserved_ipv4",
    detail: `IPv4 address ${text} is in the ${range} range`,
  };
}

/**
 * 6to4 (2002::/16, RFC 3056) and Teredo (2001::/32, RFC 4380) addresses are refused whatever they
 * embed. A packet to one goes to a relay that forwards it over IPv4 to an address taken from the
 * IPv6 address itself (6to4: bits 16-47; Teredo: the client, XOR-ed with 0xffffffff, in the last 32
 * bits, via the server in bits 32-63), so one can aim at 127.0.0.1 or the metadata endpoint. Both
 * are deprecated transition mechanisms (RFC 7526 deprecated 6to4's anycast relays; Teredo is a
 * last-resort NAT traversal for clients, not a way to reach servers), no legitimate webhook receiver
 * is reachable only through them, and refusing the prefixes outright does not depend on judging
 * whichever relay a network uses. The embedded addresses are still decoded and classified, so that
 * the detail names them.
 */
function refuseTransition(address: IPv6, range: "6to4" | "teredo", text: string): Refusal {
  const bytes = address.toByteArray();
  const inverted = bytes.map((byte) => byte ^ 0xff);
  const embedded: readonly (readonly [string, IPv4])[] =
    range === "6to4"
      ? [["site", ipv4At(bytes, 2)]]
      : [
          ["server", ipv4At(bytes, 4)],
          ["client", ipv4At(inverted, 12)],
        ];
  const named = embedded.map(([role, ipv4]) => `${role} ${ipv4.toString()}`).join(" and ");
  const refused = embedded.flatMap(([, ipv4]) => classifyIPv4(ipv4)?.detail ?? []);
  const label = range === "6to4" ? "6to4 2002::/16" : "Teredo 2001::/32";
  const why = refused.length > 0 ? ` (${refused.join("; ")})` : "";
  return { reason: "ipv4_mapped", detail: `${text} is ${label}, refused whatever it embeds; it embeds ${named}${why}` };
}

function classifyIPv6(address: IPv6, text: string): Refusal | null {
  if (address.match(METADATA_IPV6, 128)) return { reason: "metadata", detail: `${text} is cloud instance metadata` };
  const range = address.range();
  if (range === "6to4" || range === "teredo") return refuseTransition(address, range, text);
  const embedding =
    range === "unspecified" || range === "loopback"
      ? undefined
      : IPV6_EMBEDDINGS.find((candidate) => address.match(candidate.prefix));
  if (embedding !== undefined) {
    const inner = classifyIPv4(ipv4At(address.toByteArray(), 12));
    // A public embedded IPv4 reaches nothing the plain address would not, so only refused ones are refused.
    if (inner === null) return null;
    return {
      reason: "ipv4_mapped",
      detail: `${text} is ${embedding.label} and embeds a refused address: ${inner.detail}`,
    };
  }
  if (range === "unicast") {
    if (address.match(IPV6_GLOBAL_UNICAST)) return null;
    return { reason: "private_ipv6", detail: `${text} is outside the global unicast range 2000::/3` };
  }
  return { reason: REFUSED_IPV6_RANGES[range] ?? "private_ipv6", detail: `${text} is in the IPv6 ${range} range` };
}

/** Whether a host's last label is numeric, which the WHATWG parser takes to mean "this must be IPv4". */
function endsInNumber(host: string): boolean {
  const labels = host.split(".");
  const last = labels[labels.length - 1] ?? "";
  return /^[0-9]+$/.test(last) || HEX_PART.test(last);
}

/** Judges the host of a parsed URL: IPv6 literal, reserved names, or IPv4 in any spelling. */
function classifyHost(hostname: string): Refusal | null {
  if (hostname.startsWith("[")) {
    const address = ipv6Address(hostname);
    if (address === null) return { reason: "invalid_url", detail: `unparsable IPv6 host ${hostname}` };
    return classifyIPv6(address, hostname);
  }
  // A fully qualified name with trailing dots names the same host, so "localhost." is still localhost.
  const name = hostname.toLowerCase().replace(/\.+$/, "");
  if (name === "") return { reason: "invalid_url", detail: "empty host" };
  if (name === LOCALHOST_NAME || name.endsWith(`.${LOCALHOST_NAME}`)) {
    return { reason: "localhost", detail: `${hostname} is a localhost name` };
  }
  if (METADATA_HOSTNAMES.has(name)) return { reason: "metadata", detail: `${hostname} is a cloud metadata host name` };
  const ipv4 = ipv4Address(name);
  if (ipv4 !== null) return classifyIPv4(ipv4);
  // The URL standard treats such a host as IPv4 and would have refused it; reaching here means it did not.
  if (endsInNumber(name)) return { reason: "invalid_url", detail: `${hostname} ends in a number but is not IPv4` };
  return null;
}

/** Checks a URL the service is about to call; only an ok result may be fetched. */
export function checkOutboundUrl(input: string): UrlCheck {
  if (input.length > OUTBOUND_URL_LENGTH_MAX) {
    return { ok: false, reason: "too_long", detail: `URL longer than ${OUTBOUND_URL_LENGTH_MAX} characters` };
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return { ok: false, reason: "invalid_url", detail: "not a parsable absolute URL" };
  }
  // Percent-encoding while parsing can lengthen a URL, so the limit applies to what will be sent too.
  if (url.href.length > OUTBOUND_URL_LENGTH_MAX) {
    return {
      ok: false,
      reason: "too_long",
      detail: `normalised URL longer than ${OUTBOUND_URL_LENGTH_MAX} characters`,
    };
  }
  if (url.protocol !== OUTBOUND_URL_SCHEME) {
    return { ok: false, reason: "not_https", detail: `scheme ${url.protocol} is not ${OUTBOUND_URL_SCHEME}` };
  }
  if (url.username !== "" || url.password !== "") {
    return { ok: false, reason: "userinfo", detail: "credentials in the URL are not allowed" };
  }
  const refusal = classifyHost(url.hostname);
  if (refusal !== null) return { ok: false, ...refusal };
  // The parser reports the scheme's default port as "", so any port seen here was written explicitly.
  if (url.port !== "") {
    const port = Number(url.port);
    if (port < OUTBOUND_PORT_MIN && port !== HTTPS_DEFAULT_PORT) {
      return { ok: false, reason: "port_not_allowed", detail: `port ${port} is below ${OUTBOUND_PORT_MIN}` };
    }
  }
  return { ok: true, url };
}

/** Thrown by guardedFetch for a URL that checkOutboundUrl refuses; nothing was sent. */
export class OutboundUrlRefused extends LedgerError {
  override name = "OutboundUrlRefused";
  readonly code = "url_refused";
  readonly publicDetail = "The URL is not one the ledger may send to.";
  readonly reason: UrlRejection;
  readonly detail: string;

  constructor(reason: UrlRejection, detail: string) {
    super(`outbound URL refused (${reason}): ${detail}`);
    this.reason = reason;
    this.detail = detail;
  }
}

/**
 * fetch() for validated URLs only: checks the URL, never follows redirects (redirect: "manual"; a 3xx
 * is returned to the caller as is, never followed), and refuses anything checkOutboundUrl refuses by
 * throwing OutboundUrlRefused. Redirects are not followed because the target of a redirect is chosen
 * by the remote server and would bypass the check; a caller that wants to follow one must check the
 * Location itself and call guardedFetch again.
 */
export async function guardedFetch(input: string, init?: RequestInit, fetcher?: typeof fetch): Promise<Response> {
  const check = checkOutboundUrl(input);
  if (!check.ok) throw new OutboundUrlRefused(check.reason, check.detail);
  const guardedInit: RequestInit = { ...init, redirect: "manual" };
  // Calling the global fetch directly, rather than through a variable, keeps its receiver valid in workerd.
  return fetcher === undefined ? fetch(check.url.href, guardedInit) : fetcher(check.url.href, guardedInit);
}
