// Command subscribers holds graphql-transport-ws subscriptions for bench/live.py and records
// when each messageEvents event arrives, so that the load generator's own cost stays small
// next to the server's.
//
// Stdin, first line: a JSON plan {"token": "...", "connections": [["ws://...", chat], ...]}.
// Stdout: "held N failed M" once every connection got its first event (or failed), then, for
// each "records" line read from stdin, one "chat number unix-nanoseconds" line per event
// received since the last one, and "end". "stop" ends the program.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const subscribe = `subscription($t: String!, $c: Int!, $a: Int) {
  messageEvents(applicationToken: $t, chatNumber: $c, afterNumber: $a) { kind message { number } }
}`

type plan struct {
	Token       string               `json:"token"`
	Connections [][2]json.RawMessage `json:"connections"`
}

type event struct {
	Type    string `json:"type"`
	Payload struct {
		Data struct {
			MessageEvents struct {
				Message struct {
					Number int `json:"number"`
				} `json:"message"`
			} `json:"messageEvents"`
		} `json:"data"`
	} `json:"payload"`
}

type record struct {
	chat, number int
	at           int64
}

var (
	mu      sync.Mutex
	records []record
)

func hold(url string, chat int, token string, first chan<- bool) {
	dialer := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 60 * time.Second}
	conn, _, err := dialer.Dial(url, nil)
	if err != nil {
		first <- false
		return
	}
	defer conn.Close()
	if conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"connection_init"}`)) != nil {
		first <- false
		return
	}
	if _, _, err := conn.ReadMessage(); err != nil {
		first <- false
		return
	}
	message, _ := json.Marshal(map[string]any{
		"id": "1", "type": "subscribe",
		"payload": map[string]any{"query": subscribe, "variables": map[string]any{"t": token, "c": chat, "a": 0}},
	})
	if conn.WriteMessage(websocket.TextMessage, message) != nil {
		first <- false
		return
	}
	held := false
	for {
		_, data, err := conn.ReadMessage()
		now := time.Now().UnixNano()
		if err != nil {
			if !held {
				first <- false
			}
			return
		}
		var got event
		if json.Unmarshal(data, &got) != nil || got.Type != "next" {
			if !held {
				first <- false
			}
			return
		}
		if !held {
			held = true
			first <- true
			continue
		}
		mu.Lock()
		records = append(records, record{chat, got.Payload.Data.MessageEvents.Message.Number, now})
		mu.Unlock()
	}
}

func main() {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		panic(err)
	}
	var p plan
	if err := json.Unmarshal(line, &p); err != nil {
		panic(err)
	}
	first := make(chan bool, len(p.Connections))
	gate := make(chan struct{}, 50)
	for _, c := range p.Connections {
		var url string
		var chat int
		json.Unmarshal(c[0], &url)
		json.Unmarshal(c[1], &chat)
		gate <- struct{}{}
		go hold(url, chat, p.Token, first)
		time.Sleep(2 * time.Millisecond)
		<-gate
	}
	held, failed := 0, 0
	for range p.Connections {
		if <-first {
			held++
		} else {
			failed++
		}
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "held %d failed %d\n", held, failed)
	out.Flush()
	for {
		command, err := in.ReadString('\n')
		if err != nil || command == "stop\n" {
			return
		}
		mu.Lock()
		taken := records
		records = nil
		mu.Unlock()
		for _, r := range taken {
			fmt.Fprintf(out, "%d %d %d\n", r.chat, r.number, r.at)
		}
		fmt.Fprintln(out, "end")
		out.Flush()
	}
}
