// Drives one subscription end to end with the graphql-ws client (what Apollo Client, urql and
// GraphiQL use): subscribe to a chat from after a number, create messages over HTTP, and print
// every event received as JSON once `count` have arrived.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [base, token, after, count] = process.argv.slice(2);
const client = createClient({ url: base.replace(/^http/, "ws") + "/graphql", webSocketImpl: WebSocket });

const received = [];
const done = new Promise((resolve, reject) => {
  client.subscribe(
    {
      query: `subscription Live($token: String!, $after: Int) {
        messageEvents(applicationToken: $token, chatNumber: 1, afterNumber: $after) {
          kind
          message { number body }
        }
      }`,
      variables: { token, after: Number(after) },
    },
    {
      next: (result) => {
        if (result.errors) reject(new Error(JSON.stringify(result.errors)));
        received.push(result.data.messageEvents);
        if (received.length === Number(count)) resolve();
      },
      error: reject,
      complete: () => reject(new Error("the subscription completed")),
    },
  );
});

// Once connected, create the messages that are not stored yet.
await new Promise((resolve) => client.on("connected", resolve));
for (let i = 0; i < Number(count) - 1; i++) {
  const response = await fetch(`${base}/api/v1/applications/${token}/chats/1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ body: `from node ${i}` }),
  });
  if (response.status !== 201) throw new Error(`create answered ${response.status}`);
}
const timer = setTimeout(() => {
  console.error(`timed out with ${received.length} events`);
  process.exit(1);
}, 20000);
await done;
clearTimeout(timer);
await client.dispose();
console.log(JSON.stringify(received));
