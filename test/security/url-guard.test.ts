/**
 * The outbound URL guard against the runtime's own WHATWG URL parser (these tests run inside
 * workerd): a table of good and bad URLs covering every rule, the parser's normalisation of odd
 * IPv4 and IPv6 spellings that the guard relies on, the guard's parsers (ipaddr.js underneath) for
 * when normalisation differs, and guardedFetch refusing before any request and never following a
 * redirect.
 */
import { describe, expect, it } from "vitest";
import {
  checkOutboundUrl,
  guardedFetch,
  OUTBOUND_URL_LENGTH_MAX,
  OutboundUrlRefused,
  parseIPv4Literal,
  parseIPv6Literal,
  type UrlRejection,
} from "../../src/security/url-guard";

type Expected = "ok" | UrlRejection;

/** Every row is [input, expected]; the comments group them by the rule they exercise. */
const CASES: readonly (readonly [string, Expected])[] = [
  // Public hosts are allowed, whatever their case, port (443 or >= 1024) or trailing dot.
  ["https://api.openai.com/v1", "ok"],
  ["https://hooks.example.com:8443/x", "ok"],
  ["HTTPS://API.OPENAI.COM/v1", "ok"],
  ["https://example.com:443/", "ok"],
  ["https://example.com:1024/", "ok"],
  ["https://example.com:65535/", "ok"],
  ["https://example.com./", "ok"],
  ["https://example.com/path?query=1#fragment", "ok"],
  ["https://@example.com/", "ok"],
  ["https://xn--bcher-kva.example/", "ok"],
  ["https://localhost.example.com/", "ok"],
  ["https://metadata.example.com/", "ok"],
  // A public name resolving to a private address cannot be seen without DNS; see the module comment.
  ["https://127.0.0.1.nip.io/", "ok"],
  ["https://8.8.8.8/", "ok"],
  ["https://1.1.1.1:8443/hook", "ok"],
  ["https://134744072/", "ok"],
  ["https://172.32.0.1/", "ok"],
  ["https://100.128.0.1/", "ok"],
  ["https://192.169.0.1/", "ok"],
  ["https://198.20.0.1/", "ok"],
  ["https://223.255.255.255/", "ok"],
  ["https://[2606:4700:4700::1111]/", "ok"],
  ["https://[2606:4700:4700:0:0:0:0:1111]/", "ok"],
  ["https://[2606:4700:4700:0000:0000:0000:0000:1111]:8443/", "ok"],
  // IPv4-mapped and NAT64 addresses are allowed only when the embedded IPv4 is public.
  ["https://[::ffff:8.8.8.8]/", "ok"],
  ["https://[::ffff:808:808]/", "ok"],
  ["https://[64:ff9b::8.8.8.8]/", "ok"],
  // Public IPv6 next to the refused special-purpose ranges: 2001:4860::/32 is outside 2001::/23 and Teredo.
  ["https://[2001:4860:4860::8888]/", "ok"],

  // Anything but https.
  ["http://api.openai.com/", "not_https"],
  ["http://localhost/", "not_https"],
  ["ftp://example.com/file", "not_https"],
  ["javascript:alert(1)", "not_https"],
  ["file:///etc/passwd", "not_https"],
  ["data:text/plain;base64,aGVsbG8=", "not_https"],
  ["ws://example.com/", "not_https"],
  ["wss://example.com/", "not_https"],

  // Unparsable input.
  ["", "invalid_url"],
  ["example.com", "invalid_url"],
  ["https://", "invalid_url"],
  ["https://exa mple.com/", "invalid_url"],
  ["https://[::1/", "invalid_url"],
  ["https://[1::2::3]/", "invalid_url"],
  ["https://[fe80::1%25eth0]/", "invalid_url"],
  ["https://4294967296/", "invalid_url"],
  ["https://09/", "invalid_url"],
  ["https://example.com:65536/", "invalid_url"],
  [`https://example.com/${"a".repeat(OUTBOUND_URL_LENGTH_MAX)}`, "too_long"],

  // Credentials in the URL, even a bare username, and even in front of a private host.
  ["https://user@example.com/", "userinfo"],
  ["https://user:secret@example.com/", "userinfo"],
  ["https://:secret@example.com/", "userinfo"],
  ["https://example.com@127.0.0.1/", "userinfo"],

  // Localhost names.
  ["https://localhost/", "localhost"],
  ["https://LOCALHOST/", "localhost"],
  ["https://localhost./", "localhost"],
  ["https://localhost../", "localhost"],
  ["https://api.localhost/", "localhost"],
  ["https://localhost:8443/", "localhost"],

  // Loopback in every IPv4 spelling, and in IPv6.
  ["https://127.0.0.1/", "loopback"],
  ["https://127.1/", "loopback"],
  ["https://2130706433/", "loopback"],
  ["https://0x7f000001/", "loopback"],
  ["https://0x7f.1/", "loopback"],
  ["https://0177.0.0.1/", "loopback"],
  ["https://0x7F.0x0.0x0.0x1/", "loopback"],
  ["https://127.255.255.254/", "loopback"],
  ["https://127.0.0.1./", "loopback"],
  ["https://%31%32%37.0.0.1/", "loopback"],
  ["https://127.0.0.1:8443/", "loopback"],
  ["https://[::1]/", "loopback"],
  ["https://[0:0:0:0:0:0:0:1]/", "loopback"],
  ["https://[0000:0000:0000:0000:0000:0000:0000:0001]/", "loopback"],

  // The unspecified address and this-network range.
  ["https://0.0.0.0/", "unspecified"],
  ["https://0/", "unspecified"],
  ["https://0.1.2.3/", "unspecified"],
  ["https://[::]/", "unspecified"],

  // Private IPv4 in every spelling.
  ["https://10.0.0.1/", "private_ipv4"],
  ["https://10.1/", "private_ipv4"],
  ["https://167772161/", "private_ipv4"],
  ["https://012.0.0.1/", "private_ipv4"],
  ["https://0xa.0.0.1/", "private_ipv4"],
  ["https://172.16.0.1/", "private_ipv4"],
  ["https://172.31.255.255/", "private_ipv4"],
  ["https://192.168.1.1/", "private_ipv4"],
  ["https://0xc0a80101/", "private_ipv4"],
  ["https://192.168.1.1:8443/", "private_ipv4"],

  // Carrier-grade NAT, which also holds Alibaba Cloud's metadata address.
  ["https://100.64.0.1/", "shared_ipv4"],
  ["https://100.127.255.255/", "shared_ipv4"],
  ["https://100.100.100.200/", "shared_ipv4"],

  // Link-local.
  ["https://169.254.1.1/", "link_local"],
  ["https://[fe80::1]/", "link_local"],
  ["https://[FEBF:FFFF::1]/", "link_local"],

  // Cloud metadata by address, in every spelling, and by name.
  ["https://169.254.169.254/", "metadata"],
  ["https://169.254.169.254./", "metadata"],
  ["https://2852039166/", "metadata"],
  ["https://0xa9fea9fe/", "metadata"],
  ["https://0251.0376.0251.0376/", "metadata"],
  ["https://169.254.43518/", "metadata"],
  ["https://metadata.google.internal/", "metadata"],
  ["https://METADATA.GOOGLE.INTERNAL./", "metadata"],
  ["https://metadata/", "metadata"],
  ["https://instance-data/", "metadata"],
  ["https://[fd00:ec2::254]/", "metadata"],

  // Reserved, documentation, benchmarking, multicast and broadcast IPv4.
  ["https://192.0.0.1/", "reserved_ipv4"],
  ["https://192.0.2.1/", "reserved_ipv4"],
  ["https://198.18.0.1/", "reserved_ipv4"],
  ["https://198.19.255.255/", "reserved_ipv4"],
  ["https://198.51.100.1/", "reserved_ipv4"],
  ["https://203.0.113.1/", "reserved_ipv4"],
  ["https://224.0.0.1/", "reserved_ipv4"],
  ["https://239.255.255.250/", "reserved_ipv4"],
  ["https://240.0.0.1/", "reserved_ipv4"],
  ["https://255.255.255.255/", "reserved_ipv4"],
  ["https://4294967295/", "reserved_ipv4"],
  ["https://192.88.99.1/", "reserved_ipv4"],

  // Unique-local, site-local, multicast and documentation IPv6.
  ["https://[fc00::1]/", "private_ipv6"],
  ["https://[fd12:3456:789a::1]/", "private_ipv6"],
  ["https://[fec0::1]/", "private_ipv6"],
  ["https://[ff02::1]/", "private_ipv6"],
  ["https://[2001:db8::1]/", "private_ipv6"],
  // Discard, documentation 3fff::/20, local-use NAT64, and space outside the global unicast 2000::/3.
  ["https://[100::1]/", "private_ipv6"],
  ["https://[3fff::1]/", "private_ipv6"],
  ["https://[64:ff9b:1::808:808]/", "private_ipv6"],
  ["https://[4000::1]/", "private_ipv6"],
  ["https://[::1:0:0:1]/", "private_ipv6"],

  // IPv6 that embeds a refused IPv4: mapped (dotted and hex tails), compatible, translated and NAT64.
  ["https://[::ffff:127.0.0.1]/", "ipv4_mapped"],
  ["https://[::ffff:7f00:1]/", "ipv4_mapped"],
  ["https://[::ffff:10.0.0.1]/", "ipv4_mapped"],
  ["https://[::FFFF:192.168.1.1]/", "ipv4_mapped"],
  ["https://[::ffff:169.254.169.254]/", "ipv4_mapped"],
  ["https://[0:0:0:0:0:ffff:a00:1]/", "ipv4_mapped"],
  ["https://[::127.0.0.1]/", "ipv4_mapped"],
  ["https://[::10.0.0.1]/", "ipv4_mapped"],
  ["https://[::ffff:0:10.0.0.1]/", "ipv4_mapped"],
  ["https://[64:ff9b::10.0.0.1]/", "ipv4_mapped"],
  ["https://[64:ff9b::a9fe:a9fe]/", "ipv4_mapped"],
  ["https://[64:ff9b::7f00:1]/", "ipv4_mapped"],
  ["https://[::7f00:1]/", "ipv4_mapped"],
  ["https://[::a9fe:a9fe]/", "ipv4_mapped"],

  // 6to4 (2002:AABB:CCDD::/48 embeds AA.BB.CC.DD) and Teredo (2001:0::/32, the server in bits 32-63 and
  // the client XOR-ed with 0xffffffff in the last 32) are refused whatever they embed: loopback,
  // metadata, private, and public alike.
  ["https://[2002:7f00:1::]/", "ipv4_mapped"],
  ["https://[2002:a9fe:a9fe::]/", "ipv4_mapped"],
  ["https://[2002:a00:1::1]/", "ipv4_mapped"],
  ["https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "ipv4_mapped"],
  ["https://[2001:0:4136:e378:8000:63bf:5601:5601]/", "ipv4_mapped"],
  ["https://[2001:0:7f00:1:0:0:f7f7:f7f7]/", "ipv4_mapped"],
  ["https://[2002:808:808::1]/", "ipv4_mapped"],
  ["https://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/", "ipv4_mapped"],

  // Explicit ports below 1024 other than 443.
  ["https://example.com:22/", "port_not_allowed"],
  ["https://example.com:80/", "port_not_allowed"],
  ["https://example.com:25/", "port_not_allowed"],
  ["https://example.com:0/", "port_not_allowed"],
  ["https://example.com:1023/", "port_not_allowed"],
];

describe("checkOutboundUrl", () => {
  it("has a table of at least 70 cases", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(70);
  });

  it.each(CASES)("%s -> %s", (input, expected) => {
    const check = checkOutboundUrl(input);
    expect(check.ok ? "ok" : check.reason).toBe(expected);
  });

  it("returns the parsed, normalised URL for an accepted input", () => {
    const check = checkOutboundUrl("HTTPS://Hooks.Example.COM:443/a/../b?x=1");
    expect(check.ok).toBe(true);
    if (check.ok) expect(check.url.href).toBe("https://hooks.example.com/b?x=1");
  });

  it("explains a refusal, naming the embedded address of a mapped one", () => {
    const check = checkOutboundUrl("https://[::ffff:169.254.169.254]/");
    expect(check).toMatchObject({ ok: false, reason: "ipv4_mapped" });
    if (!check.ok) expect(check.detail).toContain("169.254.169.254");
  });

  it.each([
    ["https://[2002:7f00:1::]/", "site 127.0.0.1"],
    ["https://[2002:a9fe:a9fe::]/", "site 169.254.169.254"],
    ["https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "client 127.0.0.1"],
    ["https://[2001:0:4136:e378:8000:63bf:5601:5601]/", "client 169.254.169.254"],
    ["https://[2001:0:7f00:1:0:0:f7f7:f7f7]/", "server 127.0.0.1"],
    ["https://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/", "server 65.54.227.120 and client 8.8.8.8"],
  ])("decodes the IPv4 that 6to4 or Teredo %s embeds: %s", (input, embedded) => {
    const check = checkOutboundUrl(input);
    expect(check).toMatchObject({ ok: false, reason: "ipv4_mapped" });
    if (!check.ok) expect(check.detail).toContain(embedded);
  });

  it("allows a URL of exactly the maximum length and refuses one character more", () => {
    const prefix = "https://example.com/";
    const atMax = prefix + "a".repeat(OUTBOUND_URL_LENGTH_MAX - prefix.length);
    expect(atMax.length).toBe(OUTBOUND_URL_LENGTH_MAX);
    expect(checkOutboundUrl(atMax).ok).toBe(true);
    expect(checkOutboundUrl(`${atMax}a`)).toMatchObject({ ok: false, reason: "too_long" });
  });

  it("applies the length limit to the normalised URL, which percent-encoding can lengthen", () => {
    const input = `https://example.com/${" ".repeat(OUTBOUND_URL_LENGTH_MAX / 2)}x`;
    expect(input.length).toBeLessThanOrEqual(OUTBOUND_URL_LENGTH_MAX);
    expect(checkOutboundUrl(input)).toMatchObject({ ok: false, reason: "too_long" });
  });
});

describe("the runtime's URL parser", () => {
  // The guard relies on this normalisation, so a runtime that stops doing it should fail loudly here.
  it.each([
    ["https://2130706433/", "127.0.0.1"],
    ["https://0x7f.1/", "127.0.0.1"],
    ["https://0177.0.0.1/", "127.0.0.1"],
    ["https://127.1/", "127.0.0.1"],
    ["https://10.1/", "10.0.0.1"],
    ["https://0x7f000001/", "127.0.0.1"],
    ["https://2852039166/", "169.254.169.254"],
    ["https://169.254.169.254./", "169.254.169.254"],
    ["https://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]"],
    ["https://[0:0:0:0:0:0:0:1]/", "[::1]"],
    ["https://[::127.0.0.1]/", "[::7f00:1]"],
    ["https://[64:ff9b::127.0.0.1]/", "[64:ff9b::7f00:1]"],
    ["https://[2002:7F00:0001:0000::]/", "[2002:7f00:1::]"],
    ["https://[2001:0000:4136:e378:8000:63bf:80ff:fffe]/", "[2001:0:4136:e378:8000:63bf:80ff:fffe]"],
    ["HTTPS://LOCALHOST./", "localhost."],
  ])("normalises %s to host %s", (input, hostname) => {
    expect(new URL(input).hostname).toBe(hostname);
  });
});

describe("parseIPv4Literal, for when the runtime does not normalise", () => {
  it.each([
    ["127.0.0.1", 0x7f000001],
    ["2130706433", 0x7f000001],
    ["0x7f000001", 0x7f000001],
    ["0X7F.1", 0x7f000001],
    ["0177.0.0.1", 0x7f000001],
    ["127.1", 0x7f000001],
    ["127.0.1", 0x7f000001],
    ["10.1", 0x0a000001],
    ["169.254.169.254.", 0xa9fea9fe],
    ["0x", 0],
    ["4294967295", 0xffffffff],
  ])("parses %s as %i", (host, expected) => {
    expect(parseIPv4Literal(host)).toBe(expected);
  });

  it.each(["4294967296", "256.0.0.1", "1.2.3.4.5", "1.2.65536", "09", "1e3", "example.com", "", "1..2", "-1"])(
    "does not take %j for IPv4",
    (host) => {
      expect(parseIPv4Literal(host)).toBeNull();
    },
  );
});

describe("parseIPv6Literal", () => {
  it.each([
    ["::", [0, 0, 0, 0, 0, 0, 0, 0]],
    ["::1", [0, 0, 0, 0, 0, 0, 0, 1]],
    ["[::1]", [0, 0, 0, 0, 0, 0, 0, 1]],
    ["1::", [1, 0, 0, 0, 0, 0, 0, 0]],
    ["1:2:3:4:5:6:7:8", [1, 2, 3, 4, 5, 6, 7, 8]],
    ["1:2:3:4:5:6:7::", [1, 2, 3, 4, 5, 6, 7, 0]],
    ["fe80::1%eth0", [0xfe80, 0, 0, 0, 0, 0, 0, 1]],
    ["::ffff:10.0.0.1", [0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001]],
    // IPv4-compatible stays IPv4-compatible: ipaddr.js alone would read ::a.b.c.d as ::ffff:a.b.c.d.
    ["::127.0.0.1", [0, 0, 0, 0, 0, 0, 0x7f00, 0x0001]],
    ["1:2:3:4:5:6:192.168.0.1", [1, 2, 3, 4, 5, 6, 0xc0a8, 0x0001]],
    ["FD00:EC2::254", [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]],
  ])("parses %s", (text, groups) => {
    expect(parseIPv6Literal(text)).toEqual(groups);
  });

  it.each([
    "",
    ":",
    ":::",
    "1::2::3",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::8",
    "12345::",
    "g::1",
    "1.2.3.4::",
    "::1.2.3.4:5",
    "::01.2.3.4",
    "::1.2.3",
    "::256.0.0.1",
    "::ffff:0x7f.0.0.1",
    "fe80::1%",
  ])("refuses %j", (text) => {
    expect(parseIPv6Literal(text)).toBeNull();
  });
});

type FetchCall = { input: RequestInfo | URL; init: RequestInit | undefined };

/** A stand-in for fetch that records its calls and answers with the given response. */
function fakeFetcher(respond: () => Response = () => new Response("ok")) {
  const calls: FetchCall[] = [];
  const fetcher: typeof fetch = async (input, init) => {
    calls.push({ input, init });
    return respond();
  };
  return { calls, fetcher };
}

describe("guardedFetch", () => {
  it.each([
    ["https://10.0.0.1/hook", "private_ipv4"],
    ["http://hooks.example.com/", "not_https"],
    ["https://169.254.169.254/latest/meta-data/", "metadata"],
  ] as const)("refuses %s (%s) without calling the fetcher", async (input, reason) => {
    const { calls, fetcher } = fakeFetcher();
    const attempt = guardedFetch(input, { method: "POST" }, fetcher);
    await expect(attempt).rejects.toBeInstanceOf(OutboundUrlRefused);
    await expect(attempt).rejects.toMatchObject({ name: "OutboundUrlRefused", reason });
    expect(calls).toHaveLength(0);
  });

  it("passes redirect: manual to the fetcher, overriding the caller, and keeps the rest of init", async () => {
    const { calls, fetcher } = fakeFetcher();
    const response = await guardedFetch(
      "https://hooks.example.com:8443/x",
      { method: "POST", body: "{}", headers: { "content-type": "application/json" }, redirect: "follow" },
      fetcher,
    );
    expect(await response.text()).toBe("ok");
    expect(calls).toHaveLength(1);
    expect(calls[0]?.input).toBe("https://hooks.example.com:8443/x");
    expect(calls[0]?.init).toMatchObject({ method: "POST", body: "{}", redirect: "manual" });
  });

  it("passes redirect: manual when the caller gives no init", async () => {
    const { calls, fetcher } = fakeFetcher();
    await guardedFetch("https://api.openai.com/v1", undefined, fetcher);
    expect(calls[0]?.init?.redirect).toBe("manual");
  });

  it("returns a 302 as is, without following it to its Location", async () => {
    const { calls, fetcher } = fakeFetcher(
      () => new Response(null, { status: 302, headers: { location: "https://10.0.0.1/" } }),
    );
    const response = await guardedFetch("https://hooks.example.com/x", undefined, fetcher);
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe("https://10.0.0.1/");
    expect(calls).toHaveLength(1);
  });
});
