/**
 * Client IP of a request, parsed strictly so that a malformed or spoofed
 * header never reaches an `inet` cast and every spelling of one address
 * yields the same rate-limit bucket.
 */

const IPV4_OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/;
const PORT = /^\d{1,5}$/;

function isPort(text: string): boolean {
  return PORT.test(text) && Number(text) <= 65535;
}

function parseIpv4Octets(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  if (!parts.every((part) => IPV4_OCTET.test(part))) return null;
  return parts.map(Number);
}

function parseIpv6Groups(parts: string[]): number[] | null {
  const groups: number[] = [];
  for (const [index, part] of parts.entries()) {
    // Dotted IPv4 may only end the address, where it fills two groups.
    if (index === parts.length - 1 && part.includes(".")) {
      const octets = parseIpv4Octets(part);
      if (!octets) return null;
      groups.push(octets[0] << 8 | octets[1], octets[2] << 8 | octets[3]);
    } else if (IPV6_GROUP.test(part)) {
      groups.push(parseInt(part, 16));
    } else {
      return null;
    }
  }
  return groups;
}

/** Parses RFC 4291 text (`::` at most once, for one or more zero groups) into eight groups. */
function parseIpv6(text: string): number[] | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;

  const split = (half: string) => half === "" ? [] : half.split(":");
  const head = parseIpv6Groups(split(halves[0]));
  if (!head) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;

  const tail = parseIpv6Groups(split(halves[1]));
  if (!tail) return null;
  // A dotted IPv4 part must come last, so it cannot sit before the `::`.
  if (halves[0].includes(".")) return null;
  const zeros = 8 - head.length - tail.length;
  if (zeros < 1) return null;
  return [...head, ...new Array<number>(zeros).fill(0), ...tail];
}

/** Formats eight groups as RFC 5952 text: lowercase, longest zero run as `::`. */
function formatIpv6(groups: number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; start++) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0) length++;
    if (length > bestLength) {
      bestStart = start;
      bestLength = length;
    }
  }

  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(":");
  const head = hex.slice(0, bestStart).join(":");
  const tail = hex.slice(bestStart + bestLength).join(":");
  return `${head}::${tail}`;
}

/** Removes `[address]`, `[address]:port` or `a.b.c.d:port` around an address. */
function stripBracketsAndPort(text: string): string | null {
  if (text.startsWith("[")) {
    const end = text.indexOf("]");
    const address = text.slice(1, end);
    const rest = text.slice(end + 1);
    // Brackets enclose IPv6 only, as in URL hosts.
    if (end < 0 || !address.includes(":")) return null;
    if (rest !== "" && !(rest.startsWith(":") && isPort(rest.slice(1)))) {
      return null;
    }
    return address;
  }

  const colon = text.indexOf(":");
  const isIpv4WithPort = colon > 0 && text.indexOf(":", colon + 1) < 0 &&
    text.slice(0, colon).includes(".");
  if (isIpv4WithPort) {
    return isPort(text.slice(colon + 1)) ? text.slice(0, colon) : null;
  }
  return text;
}

/**
 * Parses one IPv4 or IPv6 address and returns its canonical text, or null
 * when `value` is not an address. Accepts dotted-quad IPv4 without leading
 * zeros, RFC 4291 IPv6 text (with a dotted IPv4 tail), `[IPv6]`,
 * `[IPv6]:port` and `IPv4:port`. Rejects zone ids (`fe80::1%eth0`), prefix
 * lengths and everything else. IPv4-mapped IPv6 (`::ffff:192.0.2.1`) becomes
 * the IPv4 address and other IPv6 addresses RFC 5952 text, so one client has
 * one rate-limit key. Every returned value is valid input for Postgres `inet`.
 */
export function parseIpAddress(
  value: string | null | undefined,
): string | null {
  const text = value?.trim();
  if (!text || text.length > 64) return null;
  const address = stripBracketsAndPort(text);
  if (address === null) return null;

  if (!address.includes(":")) {
    return parseIpv4Octets(address) ? address : null;
  }

  const groups = parseIpv6(address);
  if (!groups) return null;
  const isIpv4Mapped = groups.slice(0, 5).every((group) => group === 0) &&
    groups[5] === 0xffff;
  if (isIpv4Mapped) {
    return [groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff]
      .join(".");
  }
  return formatIpv6(groups);
}

/**
 * Returns the client IP of `request`: the first entry of X-Forwarded-For,
 * else X-Real-IP, each parsed with `parseIpAddress`. A missing or invalid
 * value counts as absent, so a malformed header gives null rather than an
 * error.
 *
 * NOTE: the first (leftmost) entry of X-Forwarded-For is the one the client
 * sent or its first proxy added. A client can put any value there, and in
 * X-Real-IP, unless the gateway in front overwrites these headers. This code
 * does not check which gateway the request passed, so treat the result as a
 * hint for audit rows and per-IP rate limits, not as an identity.
 */
export function clientIp(request: Request): string | null {
  const forwarded = request.headers.get("x-forwarded-for")?.split(",")[0];
  return parseIpAddress(forwarded) ??
    parseIpAddress(request.headers.get("x-real-ip"));
}
