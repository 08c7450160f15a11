// ChatBox front end (anywidget ESM): renders the synced history, sends what is typed.
// Enter (or the button) sends {type: "send", text} to the kernel as a custom message.

function two(n) {
  return String(n).padStart(2, "0");
}

function clock(ms) {
  const d = new Date(ms);
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

export default {
  render({ model, el }) {
    const root = document.createElement("div");
    root.className = "peerix-chat";
    const header = document.createElement("div");
    header.className = "peerix-chat-header";
    const history = document.createElement("div");
    history.className = "peerix-chat-history";
    const error = document.createElement("div");
    error.className = "peerix-chat-error";
    const form = document.createElement("div");
    form.className = "peerix-chat-form";
    const input = document.createElement("input");
    input.type = "text";
    input.className = "peerix-chat-input";
    const button = document.createElement("button");
    button.className = "peerix-chat-send jupyter-button";
    button.textContent = "Send";
    form.append(input, button);
    root.append(header, history, error, form);
    el.appendChild(root);

    const renderHistory = () => {
      const messages = model.get("messages") || [];
      const atBottom = history.scrollTop + history.clientHeight >= history.scrollHeight - 4;
      history.replaceChildren(
        ...messages.map((m) => {
          const row = document.createElement("div");
          row.className = `peerix-chat-msg${m.self ? " is-self" : ""}`;
          row.dataset.from = m.from || "";
          const time = document.createElement("span");
          time.className = "peerix-chat-time";
          time.textContent = clock(m.time);
          const name = document.createElement("span");
          name.className = "peerix-chat-name";
          name.textContent = m.name;
          const text = document.createElement("span");
          text.className = "peerix-chat-text";
          text.textContent = m.text;
          row.append(time, name, text);
          return row;
        }),
      );
      if (!messages.length) {
        const empty = document.createElement("div");
        empty.className = "peerix-chat-empty";
        empty.textContent = "No messages yet.";
        history.appendChild(empty);
      }
      if (atBottom || messages.length) history.scrollTop = history.scrollHeight;
    };
    const renderMeta = () => {
      header.textContent = `Chat · ${model.get("label")}`;
      input.placeholder = model.get("placeholder");
      error.textContent = model.get("error");
      error.hidden = !model.get("error");
    };
    const submit = () => {
      const text = input.value;
      if (!text.trim()) return;
      model.send({ type: "send", text });
      input.value = "";
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        submit();
      }
      event.stopPropagation(); // keep JupyterLab's notebook shortcuts out of the text box
    });
    button.addEventListener("click", submit);
    model.on("change:messages", renderHistory);
    model.on("change:error", renderMeta);
    model.on("change:label", renderMeta);
    model.on("change:placeholder", renderMeta);
    renderHistory();
    renderMeta();
    return () => {
      model.off("change:messages", renderHistory);
      model.off("change:error", renderMeta);
      model.off("change:label", renderMeta);
      model.off("change:placeholder", renderMeta);
    };
  },
};
