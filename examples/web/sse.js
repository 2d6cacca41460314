// Server-Sent Events read from a fetch response's body, as they arrive.
//
// `EventSource` cannot POST or send an `Authorization` header, so a streamed tutor reply is read
// with `fetch` and this parser (the WHATWG "event stream" format: `event:`, `data:`, `id:` lines,
// a blank line ends an event, lines starting with `:` are comments).

/**
 * Yields each event of `body` (a ReadableStream of bytes) as `{event, id, data}`, `data` being the
 * event's text (its `data:` lines joined with "\n"). `onChunk`, if given, is called with the
 * size of each piece the network delivered, before the events it completes are yielded.
 */
export async function* readEvents(body, onChunk) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  let event = { event: "message", id: undefined, data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      onChunk?.(value.length);
      let text = pending + value;
      // A "\r" at the end may be the first half of "\r\n": keep it for the next piece.
      const heldBack = text.endsWith("\r") ? "\r" : "";
      if (heldBack) text = text.slice(0, -1);
      const lines = text.split(/\r\n|\r|\n/);
      pending = lines.pop() + heldBack;
      for (const line of lines) {
        if (line === "") {
          if (event.data.length > 0) {
            yield { event: event.event, id: event.id, data: event.data.join("\n") };
          }
          event = { event: "message", id: event.id, data: [] };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event.event = value;
        else if (field === "data") event.data.push(value);
        else if (field === "id") event.id = value;
      }
    }
  } finally {
    // A reader that stops early (the `done` event read) lets the connection go.
    await reader.cancel().catch(() => {});
  }
}
