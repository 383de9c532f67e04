/**
 * Generates `nebula.yml` with the `yaml` library, never from string
 * templates. The generator checks what `nebula -test` (1.6.1) does not. Every
 * listed lighthouse has a static_host_map entry and sits inside the device's
 * network, and no lighthouse is listed twice. Endpoints carry a port from 1
 * to 65535, and blocklist entries are lowercase hex fingerprints.
 */
import { stringify } from "yaml";
import { intToIp, ipToInt, prefixToMask } from "../pki/cert.ts";

export interface LighthouseEntry {
  /** Overlay address, without prefix. */
  ip: string;
  /** Public `host:port` endpoints. */
  endpoints: string[];
}

export interface NebulaConfigInput {
  device: { ip: string; prefixLength: number; isLighthouse: boolean };
  lighthouses: LighthouseEntry[];
  /** Group every device of the project carries; the firewall admits it. */
  projectGroup: string;
  /** Fingerprints of revoked, unexpired certificates. */
  blocklist: string[];
  /** File paths of the CA bundle, host certificate and host key. */
  pki?: { ca: string; cert: string; key: string };
}

/** Size of Nebula's UDP send and receive buffers (listen.read_buffer, listen.write_buffer). */
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/** Syncthing's sync protocol port, TCP and QUIC over UDP. */
const SYNCTHING_PORT = 22000;

const FINGERPRINT = /^[0-9a-f]{64}$/;
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export class ConfigInputError extends RangeError {}

/** Splits `host:port` and checks both parts; IPv6 hosts are written `[addr]:port`. */
export function parseEndpoint(
  endpoint: string,
): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(endpoint);
  if (!match) {
    throw new ConfigInputError(
      `Endpoint ${JSON.stringify(endpoint)} must be host:port`,
    );
  }
  const port = Number(match[2]);
  if (port < 1 || port > 65535) {
    throw new ConfigInputError(
      `Endpoint ${JSON.stringify(endpoint)} has port ${port}; use 1 to 65535`,
    );
  }
  const host = match[1];
  const isIpv4 = /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
  if (isIpv4) ipToInt(host);
  else if (!host.startsWith("[") && !HOSTNAME.test(host)) {
    throw new ConfigInputError(
      `Endpoint ${JSON.stringify(endpoint)} has an invalid host name`,
    );
  }
  return { host, port };
}

function inNetwork(ip: string, network: string, prefixLength: number): boolean {
  const mask = prefixToMask(prefixLength);
  return ((ipToInt(ip) & mask) >>> 0) === ((ipToInt(network) & mask) >>> 0);
}

function parseAddress(ip: string, label: string): number {
  try {
    return ipToInt(ip);
  } catch {
    throw new ConfigInputError(
      `${label} ${JSON.stringify(ip)} is not an IPv4 address`,
    );
  }
}

function checkDevice(device: NebulaConfigInput["device"]): void {
  parseAddress(device.ip, "Device address");
  const prefix = device.prefixLength;
  if (!Number.isInteger(prefix) || prefix < 8 || prefix > 30) {
    throw new ConfigInputError(
      `Prefix length ${prefix} must be a whole number from 8 to 30`,
    );
  }
}

function checkLighthouses(input: NebulaConfigInput): void {
  const { device } = input;
  const network = intToIp(
    (ipToInt(device.ip) & prefixToMask(device.prefixLength)) >>> 0,
  );
  const seen = new Set<number>();
  for (const lighthouse of input.lighthouses) {
    const address = parseAddress(lighthouse.ip, "Lighthouse address");
    if (seen.has(address)) {
      throw new ConfigInputError(`Lighthouse ${lighthouse.ip} is listed twice`);
    }
    seen.add(address);
    if (!inNetwork(lighthouse.ip, network, device.prefixLength)) {
      throw new ConfigInputError(
        `Lighthouse ${lighthouse.ip} is outside the overlay network ${network}/${device.prefixLength}`,
      );
    }
    if (lighthouse.endpoints.length === 0) {
      throw new ConfigInputError(
        `Lighthouse ${lighthouse.ip} has no host:port endpoint`,
      );
    }
    lighthouse.endpoints.forEach(parseEndpoint);
  }
}

function checkInput(input: NebulaConfigInput): void {
  checkDevice(input.device);
  checkLighthouses(input);
  if (input.projectGroup.trim() === "" || !input.projectGroup.isWellFormed()) {
    throw new ConfigInputError(
      `Project group ${
        JSON.stringify(input.projectGroup)
      } must be non-empty Unicode text`,
    );
  }
  for (const entry of input.blocklist) {
    if (!FINGERPRINT.test(entry)) {
      throw new ConfigInputError(
        `Blocklist entry ${
          JSON.stringify(entry)
        } is not a lowercase hex SHA-256 fingerprint`,
      );
    }
  }
}

/**
 * Returns the one port that all `endpoints` of a lighthouse share. Nebula
 * listens on a single UDP port, so a lighthouse whose endpoints name two
 * ports is unreachable on one of them.
 */
export function endpointPort(ip: string, endpoints: string[]): number {
  const ports = [
    ...new Set(endpoints.map((endpoint) => parseEndpoint(endpoint).port)),
  ];
  if (ports.length === 0) {
    throw new ConfigInputError(`Lighthouse ${ip} has no host:port endpoint`);
  }
  if (ports.length > 1) {
    throw new ConfigInputError(
      `Lighthouse ${ip} has endpoints on ports ${
        ports.join(", ")
      }; Nebula listens on one UDP port, so give every endpoint the same port`,
    );
  }
  return ports[0];
}

/**
 * Returns the UDP port the device listens on. A lighthouse listens on the
 * port of its own endpoints, because every other device dials those through
 * static_host_map. Other devices listen on port 0, which the operating system
 * replaces with a free port. Peers reach them through hole punching at the
 * address and port a lighthouse saw, so no fixed port has to be opened.
 */
export function listenPort(
  device: NebulaConfigInput["device"],
  lighthouses: LighthouseEntry[],
): number {
  if (!device.isLighthouse) return 0;
  const own = lighthouses.find((lighthouse) => lighthouse.ip === device.ip);
  if (!own) {
    throw new ConfigInputError(
      `Lighthouse device ${device.ip} is not in the project's lighthouses, so it has no endpoint to listen on`,
    );
  }
  return endpointPort(own.ip, own.endpoints);
}

/** listen.host that receives IPv6 and IPv4; see `listenHost`. */
const ANY_IPV6_AND_IPV4 = "[::]";

/**
 * Returns listen.host: `[::]` when any lighthouse endpoint of the project is
 * IPv6, else `0.0.0.0`. Nebula 1.6.1 on Linux (udp/udp_linux.go) binds an
 * AF_INET6 socket, and `0.0.0.0` becomes `::ffff:0.0.0.0`, which can neither
 * receive nor send IPv6, so devices that dial an IPv6 lighthouse need the
 * wildcard too. `[::]` gives the IPv6 wildcard, which also receives IPv4
 * while net.ipv6.bindv6only is 0 (the Linux default). On other systems
 * (udp/udp_generic.go) `[::]` works where `::` does not.
 */
export function listenHost(lighthouses: LighthouseEntry[]): string {
  const hasIpv6Endpoint = lighthouses.some((lighthouse) =>
    lighthouse.endpoints.some((endpoint) =>
      parseEndpoint(endpoint).host.startsWith("[")
    )
  );
  // NOTE: a host name endpoint counts as IPv4 even when it resolves to an
  // IPv6 address only.
  return hasIpv6Endpoint ? ANY_IPV6_AND_IPV4 : "0.0.0.0";
}

/** Builds the configuration object; `generateNebulaConfig` serializes it. */
export function buildNebulaConfig(
  input: NebulaConfigInput,
): Record<string, unknown> {
  checkInput(input);
  const { device } = input;
  const port = listenPort(device, input.lighthouses);
  const pki = input.pki ?? { ca: "ca.crt", cert: "node.crt", key: "node.key" };
  // A lighthouse lists no lighthouses. Listing itself makes Nebula 1.6 fail
  // at start, and it learns hosts from their updates instead of queries.
  const others = input.lighthouses.filter((lighthouse) =>
    lighthouse.ip !== device.ip
  );
  const listed = device.isLighthouse ? [] : others;

  const staticHostMap: Record<string, string[]> = {};
  for (const lighthouse of others) {
    staticHostMap[lighthouse.ip] = [...lighthouse.endpoints];
  }

  const group = input.projectGroup;
  return {
    pki: {
      ca: pki.ca,
      cert: pki.cert,
      key: pki.key,
      blocklist: [...input.blocklist].sort(),
      // Set explicitly: the default changed from false (1.6) to true (1.8).
      disconnect_invalid: true,
    },
    static_host_map: staticHostMap,
    lighthouse: {
      am_lighthouse: device.isLighthouse,
      interval: 60,
      hosts: listed.map((lighthouse) => lighthouse.ip),
    },
    listen: {
      host: listenHost(input.lighthouses),
      port,
      // With the kernel's default UDP buffers, the overlay benchmark
      // (bench/overlay.ts) moved 330-380 Mbit/s over a 1 Gbit/s link, and
      // 640-650 Mbit/s with these. Nebula sets them on Linux only and logs a
      // failure instead of stopping.
      read_buffer: SOCKET_BUFFER_BYTES,
      write_buffer: SOCKET_BUFFER_BYTES,
    },
    punchy: { punch: true, respond: true },
    relay: {
      am_relay: device.isLighthouse,
      use_relays: true,
      relays: listed.map((lighthouse) => lighthouse.ip),
    },
    tun: {
      disabled: false,
      drop_local_broadcast: false,
      drop_multicast: false,
      tx_queue: 500,
      mtu: 1300,
    },
    logging: { level: "info", format: "text" },
    firewall: {
      conntrack: {
        tcp_timeout: "12m",
        udp_timeout: "3m",
        default_timeout: "10m",
      },
      outbound: [{ port: "any", proto: "any", host: "any" }],
      inbound: [
        { port: "any", proto: "icmp", group },
        { port: SYNCTHING_PORT, proto: "tcp", group },
        { port: SYNCTHING_PORT, proto: "udp", group },
      ],
    },
  };
}

/** Serializes the device's nebula.yml. */
export function generateNebulaConfig(input: NebulaConfigInput): string {
  const header =
    "# Generated by VidSync Mesh. Changes are overwritten on the next refresh.\n";
  return header + stringify(buildNebulaConfig(input), { lineWidth: 0 });
}
