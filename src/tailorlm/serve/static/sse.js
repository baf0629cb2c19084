// Server-sent events over fetch: EventSource can send neither a POST body nor the
// Authorization header, so the workbench reads the response body itself.

/**
 * The JSON objects of an SSE response's `data:` fields, in order, as they arrive; ends at
 * `data: [DONE]` or the end of the body. Aborting the fetch's signal ends the read with an
 * AbortError (and closes the request, which the server takes as a cancel).
 */
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value ?? new Uint8Array(), { stream: !done });
      buffer = buffer.replace(/\r\n|\r(?!$)/g, "\n"); // a trailing \r may be half of a \r\n
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const data = dataOf(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (data === "[DONE]") return;
        if (data !== null) yield JSON.parse(data);
      }
      if (done) return;
    }
  } finally {
    reader.cancel().catch(() => {}); // a reader left early (or failed): close the body too
  }
}

/** The `data:` lines of one event, joined with newlines (the SSE rule); null if none. */
function dataOf(block) {
  const lines = block.split("\n").filter((line) => line.startsWith("data:"));
  if (!lines.length) return null;
  return lines.map((line) => line.slice(line.startsWith("data: ") ? 6 : 5)).join("\n");
}
