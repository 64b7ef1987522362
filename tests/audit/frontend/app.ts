// What a chat screen does with the API as the person using it, typed by the client
// graphql-codegen generates from schema.graphql and documents/: list their chats by latest
// activity with unread badges, open one on its newest page, scroll back, send with a retry,
// mark it read, show who has seen a message, follow it live. The browser holds the
// person's user token (which the application's backend gave it), never the application's
// token. `tsc --noEmit` checks it against each generation: a schema change that breaks a
// frontend fails the build.
import { ApolloClient, HttpLink, InMemoryCache } from "@apollo/client";
import { createClient } from "graphql-ws";
import { print } from "graphql";
import {
  ChatPageDocument,
  FollowDocument,
  InboxDocument,
  MarkReadDocument,
  ScrollBackDocument,
  SeenByDocument,
  SendDocument,
  type EventKind,
  type FollowSubscription,
} from "./generated/graphql";

// Asked for from the application's own backend (which signs it, or asks the chat server).
let userToken = "";

export function signIn(token: string): void {
  userToken = token;
}

const apollo = new ApolloClient({
  link: new HttpLink({
    uri: "http://localhost:3000/graphql",
    fetch: (input, init) =>
      fetch(input, {
        ...init,
        headers: { ...(init?.headers ?? {}), authorization: `Bearer ${userToken}` },
      }),
  }),
  cache: new InMemoryCache(),
});

type Line = { number: number; body: string; createdAt: string; author?: { id: string } | null };

function byline(message: Line): string {
  // A message the application's backend sent has no author.
  return message.author ? message.author.id : "(the app)";
}

type Row = { chat: number; badge: string; preview: string; at: Date };

// The chat list: newest activity first, each with its last message and unread badge.
export async function inbox(
  after: string | null,
): Promise<{ rows: Row[]; unreadChats: number; next: string | null }> {
  const { data } = await apollo.query({ query: InboxDocument, variables: { after } });
  const viewer = data?.viewer;
  const chats = viewer?.chats;
  const rows = (chats?.nodes ?? []).map((chat) => ({
    chat: chat.number,
    badge: (chat.unreadCount ?? 0) > 0 ? String(chat.unreadCount) : "",
    preview: chat.lastMessage ? `${byline(chat.lastMessage)}: ${chat.lastMessage.body}` : "",
    at: new Date(chat.lastActivityAt ?? chat.lastMessage?.createdAt ?? 0),
  }));
  return {
    rows,
    unreadChats: viewer?.unreadChatsCount ?? 0,
    next: chats?.pageInfo.hasNextPage ? (chats.pageInfo.endCursor ?? null) : null,
  };
}

// Read up to the newest message on screen; the badge clears.
export async function markRead(chat: number, number: number): Promise<number> {
  const { data } = await apollo.mutate({ mutation: MarkReadDocument, variables: { chat, number } });
  return data?.markRead.lastReadNumber ?? 0;
}

// "Seen by" under a message: the members whose marker reached it.
export async function seenBy(chat: number, number: number): Promise<string[]> {
  const { data } = await apollo.query({ query: SeenByDocument, variables: { chat } });
  const markers = data?.viewer?.chat?.readMarkers.nodes ?? [];
  return markers.filter((m) => m.lastReadNumber >= number).map((m) => m.user.id);
}

export async function openChat(chat: number): Promise<number> {
  const { data } = await apollo.query({ query: ChatPageDocument, variables: { chat } });
  const page = data?.viewer?.chat?.messages;
  const shown: Line[] = page?.nodes ?? [];
  // Follow from the highest number on screen: nothing missed, nothing twice.
  return shown.reduce((top, message) => Math.max(top, message.number), 0);
}

// Scroll back: the 50 before the oldest on screen, ascending; where the next scroll starts.
export async function scrollBack(
  chat: number,
  before: string,
): Promise<{ shown: string[]; next: string | null }> {
  const { data } = await apollo.query({ query: ScrollBackDocument, variables: { chat, before } });
  const page = data?.viewer?.chat?.messages;
  const shown = (page?.nodes ?? []).map(
    (message) =>
      `${new Date(message.createdAt).toLocaleTimeString()} ${byline(message)} ${message.number}: ${message.body}`,
  );
  return { shown, next: page?.pageInfo.hasPreviousPage ? (page.pageInfo.startCursor ?? null) : null };
}

export async function send(chat: number, body: string): Promise<{ number: number; sentAt: Date }> {
  // One key for every attempt: a retry of a send that did go through answers the same message.
  const key = crypto.randomUUID();
  for (let attempt = 0; ; attempt++) {
    try {
      const { data } = await apollo.mutate({ mutation: SendDocument, variables: { chat, body, key } });
      const message = data?.createMessage.message;
      if (message === undefined) throw new Error("no message");
      return { number: message.number, sentAt: new Date(message.createdAt) };
    } catch (error) {
      if (attempt === 2) throw error;
    }
  }
}

export function follow(
  chat: number,
  after: number,
  show: (kind: EventKind, number: number, who: string, body: string, at: Date) => void,
): () => void {
  const ws = createClient({
    url: "ws://localhost:3000/graphql",
    connectionParams: () => ({ authorization: `Bearer ${userToken}` }),
  });
  return ws.subscribe<FollowSubscription>(
    { query: print(FollowDocument), variables: { chat, after } },
    {
      next: ({ data }) => {
        if (!data) return;
        const { kind, message } = data.messageEvents;
        const seen: EventKind = kind === "CREATED" ? "CREATED" : "UPDATED";
        show(seen, message.number, byline(message), message.body, new Date(message.updatedAt));
      },
      error: () => undefined,
      complete: () => undefined,
    },
  );
}
