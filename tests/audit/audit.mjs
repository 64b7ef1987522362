// Runs graphql-http's server audit against the URL given and prints every result as JSON.
import { auditServer } from "graphql-http";

const url = process.argv[2];
const results = await auditServer({ url });
const shown = await Promise.all(
  results.map(async (result) => ({
    id: result.id,
    name: result.name,
    status: result.status,
    reason: result.reason ?? null,
    body: result.response ? (await result.response.text()).slice(0, 300) : null,
  })),
);
console.log(JSON.stringify(shown));
