// Apollo Client with its persisted-queries link, as a frontend ships it: each query goes out
// as its hash (GET), the document follows once when the server does not know it. Prints what
// went over the wire and what the queries answered, as JSON.
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { createHash } from "node:crypto";

const [url, token] = process.argv.slice(2);
const sent = [];
const recording = async (input, init) => {
  const response = await fetch(input, init);
  const target = new URL(typeof input === "string" ? input : input.url);
  sent.push({ method: init?.method ?? "GET", hasQuery: target.searchParams.has("query") || (init?.body ?? "").includes('"query"'), status: response.status });
  return response;
};
const persisted = new PersistedQueryLink({
  sha256: (text) => createHash("sha256").update(text).digest("hex"),
  useGETForHashedQueries: true,
});
const client = new ApolloClient({
  link: persisted.concat(new HttpLink({ uri: url, fetch: recording })),
  cache: new InMemoryCache(),
});
const QUERY = gql`
  query Name($token: String!) {
    application(token: $token) { name chatsCount }
  }
`;
const answers = [];
for (let i = 0; i < 2; i++) {
  const result = await client.query({ query: QUERY, variables: { token }, fetchPolicy: "network-only" });
  answers.push(result.data.application);
}
console.log(JSON.stringify({ sent, answers }));
