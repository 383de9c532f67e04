/**
 * `npm run dev:user -- <email>`: creates (or finds) a user on the running
 * local stack and prints JSON with its id and an access token.
 */
const email = Deno.args[0];
if (!email) {
  console.error("usage: npm run dev:user -- <email>");
  Deno.exit(2);
}

const base = (Deno.env.get("VIDSYNC_MESH_URL") ??
  `http://127.0.0.1:${Deno.env.get("PORT") ?? 54321}`).replace(/\/$/, "");
let response: Response;
try {
  response = await fetch(`${base}/auth/v1/dev/users`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email }),
  });
} catch {
  console.error(
    `Could not reach the local stack at ${base}; start it with \`npm start\``,
  );
  Deno.exit(1);
}
const body = await response.text();
if (!response.ok) {
  console.error(`Creating the user failed (HTTP ${response.status}): ${body}`);
  Deno.exit(1);
}
console.log(body);
