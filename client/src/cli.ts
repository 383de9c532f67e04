/**
 * `vidsync-mesh`: enroll this machine into a VidSync project's Nebula network
 * and keep its configuration current. Progress goes to stderr, results to
 * stdout (JSON with --json), and every failure is one line on stderr with an
 * exit code from `ExitCode`.
 */
import { parseArgs } from "node:util";
import { MeshClient } from "./client.ts";
import {
  AuthError,
  ExitCode,
  MeshApiError,
  MeshClientError,
  RateLimitedError,
  UsageError,
} from "./errors.ts";

/** Streams and environment of one run, so tests run the CLI in-process. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
}

const DEFAULT_URL = "http://127.0.0.1:54321";

const COMMON_HELP = `Connection and sign-in:
  --url URL            Supabase project URL (env SUPABASE_URL; default ${DEFAULT_URL})
  --anon-key KEY       the project's anon key (env SUPABASE_ANON_KEY)
  --email EMAIL        sign in with this email (env VIDSYNC_EMAIL); the password
                       is read from env VIDSYNC_PASSWORD
  (env VIDSYNC_ACCESS_TOKEN: use this access token instead of signing in)
  --timeout SECONDS    time limit of each request (default 30)

Output:
  --json               print the result as JSON on stdout
  --quiet              no progress lines on stderr
  --help               show this help

Exit codes: 0 ok, 1 other error, 2 usage, 3 authentication or permission,
4 server error, 5 network error.`;

const PROJECT_HELP = `  --project UUID       project id (required)
  --dir PATH           configuration directory (default ~/.vidsync/nebula/<project>)`;

const COMMANDS: Record<string, { summary: string; help: string }> = {
  enroll: {
    summary: "register this device and install its Nebula configuration",
    help: `Usage: vidsync-mesh enroll --project UUID --name NAME [options]

Generates a key pair on this device (the private key never leaves it),
registers the device and installs ca.crt, node.crt, node.key (mode 0600) and
nebula.yml. Enrolling again in the same directory keeps the device id, key
and overlay IP.

${PROJECT_HELP}
  --name NAME          device name shown to the project's members (required)
  --device-id UUID     device id (default: the enrolled one, else a new one)
  --lighthouse         register this device as a lighthouse of the project
  --zip                download the bundle as application/zip instead of JSON
`,
  },
  status: {
    summary: "show the device's address, certificate and last contact",
    help: `Usage: vidsync-mesh status --project UUID [options]

Checks the installed files (key pair, CA) and reads the device's status from
the server.

${PROJECT_HELP}
`,
  },
  renew: {
    summary: "get a new host certificate and install it in place",
    help: `Usage: vidsync-mesh renew --project UUID [options]

${PROJECT_HELP}
  --rotate-key         generate a new key pair for the new certificate
`,
  },
  refresh: {
    summary: "update nebula.yml and the CA bundle if the server has newer ones",
    help: `Usage: vidsync-mesh refresh --project UUID [options]

Sends the installed config's ETag; nothing is written when it is current.

${PROJECT_HELP}
`,
  },
  release: {
    summary: "give the device's address back and remove its configuration",
    help: `Usage: vidsync-mesh release --project UUID [options]

${PROJECT_HELP}
`,
  },
};

function mainHelp(): string {
  const lines = Object.entries(COMMANDS).map(([name, command]) =>
    `  ${name.padEnd(10)} ${command.summary}`
  );

  return `Usage: vidsync-mesh <command> [options]

Commands:
${lines.join("\n")}

Run "vidsync-mesh <command> --help" for the options of a command.

${COMMON_HELP}
`;
}

const OPTIONS = {
  url: { type: "string" },
  "anon-key": { type: "string" },
  email: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  project: { type: "string" },
  dir: { type: "string" },
  name: { type: "string" },
  "device-id": { type: "string" },
  lighthouse: { type: "boolean" },
  zip: { type: "boolean" },
  "rotate-key": { type: "boolean" },
} as const;

const COMMAND_OPTIONS: Record<string, string[]> = {
  enroll: ["name", "device-id", "lighthouse", "zip"],
  status: [],
  renew: ["rotate-key"],
  refresh: [],
  release: [],
};

type Values = Record<string, string | boolean | undefined>;

function parse(command: string, args: string[]): Values {
  let values: Values;
  try {
    values = parseArgs({ args, options: OPTIONS, strict: true }).values;
  } catch (error) {
    throw new UsageError(
      `${(error as Error).message}; see "vidsync-mesh ${command} --help"`,
    );
  }
  const allowed = new Set([
    ...COMMAND_OPTIONS[command],
    "url",
    "anon-key",
    "email",
    "timeout",
    "json",
    "quiet",
    "help",
    "project",
    "dir",
  ]);
  for (const key of Object.keys(values)) {
    if (!allowed.has(key)) {
      throw new UsageError(
        `Option --${key} does not apply to ${command}; see "vidsync-mesh ${command} --help"`,
      );
    }
  }

  return values;
}

function requireValue(values: Values, key: string, command: string): string {
  const value = values[key];
  if (typeof value !== "string" || value === "") {
    throw new UsageError(
      `Missing --${key}; see "vidsync-mesh ${command} --help"`,
    );
  }

  return value;
}

function timeoutMs(values: Values): number | undefined {
  if (values.timeout === undefined) return undefined;

  const seconds = Number(values.timeout);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new UsageError(
      `Invalid --timeout "${values.timeout}": expected a positive number of seconds`,
    );
  }
  return seconds * 1000;
}

/** Builds the client and signs in; the token from the environment wins over email and password. */
async function connect(values: Values, io: CliIo): Promise<MeshClient> {
  const client = new MeshClient({
    url: String(values.url ?? io.env.SUPABASE_URL ?? DEFAULT_URL),
    anonKey: String(values["anon-key"] ?? io.env.SUPABASE_ANON_KEY ?? ""),
    accessToken: io.env.VIDSYNC_ACCESS_TOKEN || undefined,
    timeoutMs: timeoutMs(values),
  });
  if (client.api.hasAccessToken) return client;

  const email = (values.email as string | undefined) ?? io.env.VIDSYNC_EMAIL;
  const password = io.env.VIDSYNC_PASSWORD;
  if (!email || !password) {
    throw new AuthError(
      "No credentials: set VIDSYNC_ACCESS_TOKEN, or --email (or VIDSYNC_EMAIL) with VIDSYNC_PASSWORD",
      "missing_credentials",
    );
  }
  if (!values.quiet) io.stderr(`· Signing in as ${email}\n`);
  await client.signIn(email, password);

  return client;
}

async function runCommand(
  command: string,
  values: Values,
  io: CliIo,
): Promise<{ result: unknown; text: string }> {
  const onProgress = values.quiet
    ? undefined
    : (step: string) => io.stderr(`· ${step}\n`);
  const target = {
    projectId: requireValue(values, "project", command),
    directory: values.dir as string | undefined,
    onProgress,
  };
  if (command === "enroll") requireValue(values, "name", command);
  const client = await connect(values, io);

  switch (command) {
    case "enroll": {
      const result = await client.enroll({
        ...target,
        deviceName: values.name as string,
        deviceId: values["device-id"] as string | undefined,
        lighthouse: values.lighthouse as boolean | undefined,
        format: values.zip ? "zip" : "json",
      });
      const { bundle: _bundle, ...printable } = result;
      return {
        result: printable,
        text: describeEnrollment(result.state, result.directory),
      };
    }
    case "renew": {
      const result = await client.renew({
        ...target,
        rotateKey: Boolean(values["rotate-key"]),
      });
      const { bundle: _bundle, ...printable } = result;
      return {
        result: printable,
        text: describeEnrollment(result.state, result.directory),
      };
    }
    case "status": {
      const result = await client.status(target);
      return {
        result,
        text: describeStatus(result.server, result.certificateCurrent),
      };
    }
    case "refresh": {
      const result = await client.refresh(target);
      return {
        result,
        text: result.changed
          ? `Updated the configuration in ${
            target.directory ?? client.directoryOf(target)
          }`
          : "Configuration is up to date",
      };
    }
    default: {
      const result = await client.release(target);
      return {
        result,
        text: `Released device ${result.deviceId}${
          result.removed ? " and removed its configuration" : ""
        }`,
      };
    }
  }
}

function describeEnrollment(
  state: {
    deviceId: string;
    ip: string;
    prefixLength: number;
    certificate: { fingerprint: string; notAfter: string };
  },
  directory: string,
): string {
  return [
    `Device ${state.deviceId} has overlay IP ${state.ip}/${state.prefixLength}`,
    `Certificate ${state.certificate.fingerprint} valid until ${state.certificate.notAfter}`,
    `Start Nebula with: nebula -config ${directory}/nebula.yml`,
  ].join("\n");
}

function describeStatus(
  server: {
    deviceId: string;
    ip: string;
    prefixLength: number;
    lastSeen: string | null;
    certificate: { notAfter: string; revokedAt: string | null };
  },
  current: boolean,
): string {
  return [
    `Device ${server.deviceId} has overlay IP ${server.ip}/${server.prefixLength}`,
    `Certificate valid until ${server.certificate.notAfter}${
      server.certificate.revokedAt
        ? `, revoked at ${server.certificate.revokedAt}`
        : ""
    }`,
    current
      ? "Installed certificate is current"
      : "Installed certificate is not the server's latest; run renew",
    `Last seen: ${server.lastSeen ?? "never"}`,
  ].join("\n");
}

function errorLine(
  error: unknown,
): { line: string; exitCode: number; json: Record<string, unknown> } {
  if (error instanceof MeshClientError) {
    const retry =
      error instanceof RateLimitedError && error.retryAfterSeconds !== undefined
        ? ` Retry after ${error.retryAfterSeconds} s.`
        : "";
    const fields = error instanceof MeshApiError && error.fieldErrors.length > 0
      ? ` [${
        error.fieldErrors.map((issue) => `${issue.field}: ${issue.message}`)
          .join("; ")
      }]`
      : "";
    return {
      line: `${error.message}${fields}${retry}`.replace(/\s*\n\s*/g, " "),
      exitCode: error.exitCode,
      json: {
        code: error.code,
        message: error.message,
        ...(error instanceof MeshApiError
          ? { status: error.status, problem: error.problem }
          : {}),
      },
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return {
    line: message.replace(/\s*\n\s*/g, " "),
    exitCode: ExitCode.other,
    json: { code: "error", message },
  };
}

/** Runs the tool with `args` (without the program name) and returns the exit code. */
export async function runCli(args: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = args;
  const wantsJson = rest.includes("--json");
  try {
    if (
      !command || command === "--help" || command === "-h" || command === "help"
    ) {
      io.stdout(mainHelp());
      return command ? ExitCode.ok : ExitCode.usage;
    }
    if (!COMMANDS[command]) {
      throw new UsageError(
        `Unknown command "${command}"; run "vidsync-mesh --help"`,
      );
    }
    const values = parse(command, rest);
    if (values.help) {
      io.stdout(`${COMMANDS[command].help}\n${COMMON_HELP}\n`);
      return ExitCode.ok;
    }

    const { result, text } = await runCommand(command, values, io);
    io.stdout(wantsJson ? `${JSON.stringify(result)}\n` : `${text}\n`);
    return ExitCode.ok;
  } catch (error) {
    const { line, exitCode, json } = errorLine(error);
    io.stderr(`vidsync-mesh: ${line}\n`);
    if (wantsJson) io.stdout(`${JSON.stringify({ error: json })}\n`);
    return exitCode;
  }
}
