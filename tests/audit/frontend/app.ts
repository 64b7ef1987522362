// What a chat screen does with the API, typed by the client graphql-codegen generates from
// schema.graphql and documents/: open a chat on its newest page, scroll back, send with a
// retry, follow it live. `tsc --noEmit` checks it against each generation: a schema change
// that breaks a frontend fails the build.
import { ApolloClient, HttpLink, InMemoryCache } from "@apollo/client";
import { createClient } from "graphql-ws";
import { print } from "graphql";
import {
  ChatPageDocument,
  FollowDocument,
  ScrollBackDocument,
  SendDocument,
  type EventKind,
  type FollowSubscription,
} from "./generated/graphql";

const apollo = new ApolloClient({
  link: new HttpLink({ uri: "http://localhost:3000/graphql" }),
  cache: new InMemoryCache(),
});

export async function openChat(token: string, chat: number): Promise<number> {
  const { data } = await apollo.query({ query: ChatPageDocument, variables: { token, chat } });
  const page = data?.application?.chat?.messages;
  const shown: { number: number; body: string; createdAt: string }[] = page?.nodes ?? [];
  // Follow from the highest number on screen: nothing missed, nothing twice.
  return shown.reduce((top, message) => Math.max(top, message.number), 0);
}

// Scroll back: the 50 before the oldest on screen, ascending; where the next scroll starts.
export async function scrollBack(
  token: string,
  chat: number,
  before: string,
): Promise<{ shown: string[]; next: string | null }> {
  const { data } = await apollo.query({
    query: ScrollBackDocument,
    variables: { token, chat, before },
  });
  const page = data?.application?.chat?.messages;
  const shown = (page?.nodes ?? []).map(
    (message) => `${new Date(message.createdAt).toLocaleTimeString()} ${message.number}: ${message.body}`,
  );
  return { shown, next: page?.pageInfo.hasPreviousPage ? (page.pageInfo.startCursor ?? null) : null };
}

export async function send(
  token: string,
  chat: number,
  body: string,
): Promise<{ number: number; sentAt: Date }> {
  // One key for every attempt: a retry of a send that did go through answers the same message.
  const key = crypto.randomUUID();
  for (let attempt = 0; ; attempt++) {
    try {
      const { data } = await apollo.mutate({ mutation: SendDocument, variables: { token, chat, body, key } });
      const message = data?.createMessage.message;
      if (message === undefined) throw new Error("no message");
      return { number: message.number, sentAt: new Date(message.createdAt) };
    } catch (error) {
      if (attempt === 2) throw error;
    }
  }
}

export function follow(
  token: string,
  chat: number,
  after: number,
  show: (kind: EventKind, number: number, body: string, at: Date) => void,
): () => void {
  const ws = createClient({ url: "ws://localhost:3000/graphql" });
  return ws.subscribe<FollowSubscription>(
    { query: print(FollowDocument), variables: { token, chat, after } },
    {
      next: ({ data }) => {
        if (!data) return;
        const { kind, message } = data.messageEvents;
        const seen: EventKind = kind === "CREATED" ? "CREATED" : "UPDATED";
        show(seen, message.number, message.body, new Date(message.updatedAt));
      },
      error: () => undefined,
      complete: () => undefined,
    },
  );
}
