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
 * already normalises decimal (2130706433), hex (0x7f.1), octal (0177.0.0.1) and short (127.1) IPv4
 * hosts into dotted quads and compresses IPv6 hosts; the guard relies on that, but also parses
 * those forms itself so that a runtime whose parser normalised differently would still be judged
 * correctly. IPv6 addresses that embed an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible
 * ::a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d and NAT64 64:ff9b::/96) are refused as ipv4_mapped
 * when the embedded address is refused, and allowed when it is public, because then they reach
 * nothing that the plain IPv4 address would not.
 */

/** Why a URL was refused. IPv6 multicast and documentation ranges are reported as private_ipv6. */
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

const IPV4_BITS = 32;
const IPV6_GROUPS = 8;
const IPV6_GROUP_BITS = 16;
const IPV4_OCTET_MAX = 255;
// The patterns are declared before the range tables below, which parse their constants at load time.
const DECIMAL_PART = /^(?:0|[1-9][0-9]*)$/;
const OCTAL_PART = /^0[0-7]+$/;
const HEX_PART = /^0x[0-9a-f]*$/i;
const HEX_GROUP = /^[0-9a-f]{1,4}$/i;
const DOTTED_QUAD = /^(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}$/;

type Ipv4Range = { base: number; prefix: number; reason: UrlRejection; label: string };

/** Builds a range from a dotted quad; used only on the constants below, which are known to be valid. */
function ipv4Range(cidr: string, reason: UrlRejection, label: string): Ipv4Range {
  const [address = "", prefix = ""] = cidr.split("/");
  const base = parseIPv4Literal(address);
  if (base === null) throw new Error(`bad IPv4 range constant ${cidr}`);
  return { base, prefix: Number(prefix), reason, label: `${cidr} (${label})` };
}

/**
 * IPv4 ranges that an outbound call must never reach. The first match wins, so the single
 * metadata address comes before the link-local range that contains it.
 */
export const REFUSED_IPV4_RANGES: readonly Ipv4Range[] = [
  ipv4Range("169.254.169.254/32", "metadata", "cloud instance metadata"),
  ipv4Range("255.255.255.255/32", "reserved_ipv4", "limited broadcast"),
  ipv4Range("0.0.0.0/8", "unspecified", "this network"),
  ipv4Range("127.0.0.0/8", "loopback", "loopback"),
  ipv4Range("10.0.0.0/8", "private_ipv4", "private network"),
  ipv4Range("172.16.0.0/12", "private_ipv4", "private network"),
  ipv4Range("192.168.0.0/16", "private_ipv4", "private network"),
  ipv4Range("100.64.0.0/10", "shared_ipv4", "carrier-grade NAT"),
  ipv4Range("169.254.0.0/16", "link_local", "link-local"),
  ipv4Range("192.0.0.0/24", "reserved_ipv4", "IETF protocol assignments"),
  ipv4Range("192.0.2.0/24", "reserved_ipv4", "documentation TEST-NET-1"),
  ipv4Range("198.18.0.0/15", "reserved_ipv4", "benchmarking"),
  ipv4Range("198.51.100.0/24", "reserved_ipv4", "documentation TEST-NET-2"),
  ipv4Range("203.0.113.0/24", "reserved_ipv4", "documentation TEST-NET-3"),
  ipv4Range("224.0.0.0/4", "reserved_ipv4", "multicast"),
  ipv4Range("240.0.0.0/4", "reserved_ipv4", "reserved for future use"),
];

type Ipv6Range = { base: readonly number[]; prefix: number; reason: UrlRejection; label: string };

/** Builds a range from an IPv6 constant; used only on the constants below, which are known to be valid. */
function ipv6Range(cidr: string, reason: UrlRejection, label: string): Ipv6Range {
  const [address = "", prefix = ""] = cidr.split("/");
  const base = parseIPv6Literal(address);
  if (base === null) throw new Error(`bad IPv6 range constant ${cidr}`);
  return { base, prefix: Number(prefix), reason, label: `${cidr} (${label})` };
}

/** The EC2 instance metadata service on its IPv6 address, checked before the unique-local range holding it. */
const IPV6_METADATA = ipv6Range("fd00:ec2::254/128", "metadata", "cloud instance metadata");

/**
 * /96 prefixes whose last 32 bits are an IPv4 address that the packet effectively goes to. The
 * IPv4-compatible prefix ::/96 comes last because the others are not inside it, but :: and ::1 are,
 * and those are handled before these prefixes are consulted.
 */
const IPV6_EMBEDDING_PREFIXES: readonly Ipv6Range[] = [
  ipv6Range("::ffff:0:0/96", "ipv4_mapped", "IPv4-mapped"),
  ipv6Range("::ffff:0:0:0/96", "ipv4_mapped", "IPv4-translated"),
  ipv6Range("64:ff9b::/96", "ipv4_mapped", "NAT64"),
  ipv6Range("::/96", "ipv4_mapped", "IPv4-compatible"),
];

/** IPv6 ranges that an outbound call must never reach; the first match wins. */
export const REFUSED_IPV6_RANGES: readonly Ipv6Range[] = [
  ipv6Range("fe80::/10", "link_local", "link-local"),
  ipv6Range("fec0::/10", "private_ipv6", "site-local, deprecated"),
  ipv6Range("fc00::/7", "private_ipv6", "unique-local"),
  ipv6Range("ff00::/8", "private_ipv6", "multicast"),
  ipv6Range("64:ff9b:1::/48", "private_ipv6", "local-use NAT64"),
  ipv6Range("2001:db8::/32", "private_ipv6", "documentation"),
];

/** Reads one part of an IPv4 host the way the WHATWG parser does: decimal, 0x hex, or 0-prefixed octal. */
function ipv4Part(part: string): number | null {
  if (HEX_PART.test(part)) return part.length === 2 ? 0 : Number.parseInt(part.slice(2), 16);
  if (OCTAL_PART.test(part)) return Number.parseInt(part.slice(1), 8);
  if (DECIMAL_PART.test(part)) return Number.parseInt(part, 10);
  return null;
}

/**
 * Parses an IPv4 host in any form the WHATWG URL standard accepts (one to four parts, each decimal,
 * hex or octal, the last filling the remaining bytes) and returns it as an unsigned 32-bit number,
 * or null when the host is not such an address. A single trailing dot is tolerated.
 */
export function parseIPv4Literal(host: string): number | null {
  const parts = host.split(".");
  if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop();
  if (parts.length === 0 || parts.length > 4) return null;
  const numbers: number[] = [];
  for (const part of parts) {
    const value = ipv4Part(part);
    if (value === null) return null;
    numbers.push(value);
  }
  const last = numbers.pop() ?? 0;
  if (numbers.some((value) => value > IPV4_OCTET_MAX)) return null;
  // The last part covers every byte the earlier parts left, so 127.1 is 127.0.0.1.
  if (last >= 256 ** (4 - numbers.length)) return null;
  return numbers.reduce((sum, value, index) => sum + value * 256 ** (3 - index), last);
}

/** Whether a host's last label is numeric, which the WHATWG parser takes to mean "this must be IPv4". */
function endsInNumber(host: string): boolean {
  const labels = host.split(".");
  const last = labels[labels.length - 1] ?? "";
  return /^[0-9]+$/.test(last) || HEX_PART.test(last);
}

/** Reads the colon-separated groups of one side of an IPv6 address; an IPv4 tail becomes two groups. */
function ipv6Groups(text: string, allowIpv4Tail: boolean): number[] | null {
  if (text === "") return [];
  const groups: number[] = [];
  const parts = text.split(":");
  for (const [index, part] of parts.entries()) {
    if (part.includes(".")) {
      // Dotted IPv4 is only valid as the final 32 bits, and only in strict dotted-quad form.
      if (!allowIpv4Tail || index !== parts.length - 1 || !DOTTED_QUAD.test(part)) return null;
      const ipv4 = parseIPv4Literal(part);
      if (ipv4 === null) return null;
      groups.push(Math.floor(ipv4 / 2 ** IPV6_GROUP_BITS), ipv4 % 2 ** IPV6_GROUP_BITS);
    } else {
      if (!HEX_GROUP.test(part)) return null;
      groups.push(Number.parseInt(part, 16));
    }
  }
  return groups;
}

/**
 * Parses an IPv6 address (optionally in brackets, optionally with a %zone id, which is ignored)
 * into its eight 16-bit groups, expanding "::" and an embedded IPv4 tail; null when it is invalid.
 */
export function parseIPv6Literal(input: string): number[] | null {
  let text = input.startsWith("[") && input.endsWith("]") ? input.slice(1, -1) : input;
  const zone = text.indexOf("%");
  if (zone !== -1) {
    if (zone === text.length - 1) return null;
    text = text.slice(0, zone);
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const [head = "", tail] = halves;
  if (tail === undefined) {
    const groups = ipv6Groups(head, true);
    return groups !== null && groups.length === IPV6_GROUPS ? groups : null;
  }
  const before = ipv6Groups(head, false);
  const after = ipv6Groups(tail, true);
  // "::" stands for at least one zero group, so the explicit groups must leave room for it.
  if (before === null || after === null || before.length + after.length >= IPV6_GROUPS) return null;
  const zeros = new Array<number>(IPV6_GROUPS - before.length - after.length).fill(0);
  return [...before, ...zeros, ...after];
}

function formatIPv4(address: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(address / 2 ** shift) % 256).join(".");
}

function inIpv4Range(address: number, range: Ipv4Range): boolean {
  const size = 2 ** (IPV4_BITS - range.prefix);
  return Math.floor(address / size) === Math.floor(range.base / size);
}

function inIpv6Range(groups: readonly number[], range: Ipv6Range): boolean {
  for (let index = 0; index < IPV6_GROUPS; index++) {
    const bits = Math.min(Math.max(range.prefix - index * IPV6_GROUP_BITS, 0), IPV6_GROUP_BITS);
    if (bits === 0) return true;
    const size = 2 ** (IPV6_GROUP_BITS - bits);
    if (Math.floor((groups[index] ?? 0) / size) !== Math.floor((range.base[index] ?? 0) / size)) return false;
  }
  return true;
}

function classifyIPv4(address: number): Refusal | null {
  const range = REFUSED_IPV4_RANGES.find((candidate) => inIpv4Range(address, candidate));
  if (range === undefined) return null;
  return { reason: range.reason, detail: `IPv4 address ${formatIPv4(address)} is in ${range.label}` };
}

function classifyIPv6(groups: readonly number[], text: string): Refusal | null {
  if (groups.every((group) => group === 0))
    return { reason: "unspecified", detail: `${text} is the unspecified address` };
  if (groups.slice(0, -1).every((group) => group === 0) && groups[IPV6_GROUPS - 1] === 1) {
    return { reason: "loopback", detail: `${text} is the IPv6 loopback address` };
  }
  if (inIpv6Range(groups, IPV6_METADATA)) return { reason: "metadata", detail: `${text} is in ${IPV6_METADATA.label}` };
  const embedding = IPV6_EMBEDDING_PREFIXES.find((prefix) => inIpv6Range(groups, prefix));
  if (embedding !== undefined) {
    const ipv4 = (groups[6] ?? 0) * 2 ** IPV6_GROUP_BITS + (groups[7] ?? 0);
    const inner = classifyIPv4(ipv4);
    // A public embedded IPv4 reaches nothing the plain address would not, so only refused ones are refused.
    if (inner === null) return null;
    return {
      reason: "ipv4_mapped",
      detail: `${text} is ${embedding.label} and embeds a refused address: ${inner.detail}`,
    };
  }
  const range = REFUSED_IPV6_RANGES.find((candidate) => inIpv6Range(groups, candidate));
  if (range === undefined) return null;
  return { reason: range.reason, detail: `${text} is in ${range.label}` };
}

/** Judges the host of a parsed URL: IPv6 literal, reserved names, or IPv4 in any spelling. */
function classifyHost(hostname: string): Refusal | null {
  if (hostname.startsWith("[")) {
    const groups = parseIPv6Literal(hostname);
    if (groups === null) return { reason: "invalid_url", detail: `unparsable IPv6 host ${hostname}` };
    return classifyIPv6(groups, hostname);
  }
  // A fully qualified name with trailing dots names the same host, so "localhost." is still localhost.
  const name = hostname.toLowerCase().replace(/\.+$/, "");
  if (name === "") return { reason: "invalid_url", detail: "empty host" };
  if (name === LOCALHOST_NAME || name.endsWith(`.${LOCALHOST_NAME}`)) {
    return { reason: "localhost", detail: `${hostname} is a localhost name` };
  }
  if (METADATA_HOSTNAMES.has(name)) return { reason: "metadata", detail: `${hostname} is a cloud metadata host name` };
  const ipv4 = parseIPv4Literal(name);
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
export class OutboundUrlRefused extends Error {
  override name = "OutboundUrlRefused";
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
