// EventsView front end (anywidget ESM): the synced rows as a table, newest at the bottom,
// and one toggle per event group. A toggle sends {type: "groups", groups} to the kernel,
// which filters the log (so `last` counts matching rows).

const COMPACT = new Set(["t", "remote", "event", "state", "label", "kind", "detail"]);

function cell(tag, text, className) {
  const el = document.createElement(tag);
  el.textContent = text == null ? "" : String(text);
  if (className) el.className = className;
  return el;
}

export default {
  render({ model, el }) {
    const root = document.createElement("div");
    root.className = "peerix-events";
    const bar = document.createElement("div");
    bar.className = "peerix-events-bar";
    const groups = document.createElement("div");
    groups.className = "peerix-events-groups";
    const count = cell("span", "", "peerix-events-count");
    bar.append(groups, count);
    const scroller = document.createElement("div");
    scroller.className = "peerix-events-scroll";
    const table = document.createElement("table");
    table.className = "peerix-events-table";
    const thead = document.createElement("thead");
    const tbody = document.createElement("tbody");
    table.append(thead, tbody);
    scroller.appendChild(table);
    const error = cell("div", "", "peerix-events-error");
    root.append(bar, scroller, error);
    el.appendChild(root);

    const shown = () => {
      const columns = model.get("columns");
      return model.get("compact") ? columns.filter((c) => COMPACT.has(c)) : columns;
    };

    const renderGroups = () => {
      const selected = new Set(model.get("groups"));
      const toggle = (group) => {
        let next;
        if (group === null) next = [];
        else if (selected.has(group)) next = [...selected].filter((g) => g !== group);
        else next = [...selected, group];
        model.send({ type: "groups", groups: next });
      };
      const chip = (label, group, on) => {
        const b = cell("button", label, `peerix-events-chip${on ? " is-on" : ""}`);
        b.dataset.group = group ?? "*";
        b.addEventListener("click", () => toggle(group));
        return b;
      };
      groups.replaceChildren(
        chip("all", null, selected.size === 0),
        ...model.get("known_groups").map((g) => chip(g, g, selected.has(g))),
      );
    };

    const renderRows = () => {
      const columns = model.get("columns");
      const visible = shown();
      const index = visible.map((c) => columns.indexOf(c));
      const head = document.createElement("tr");
      for (const c of visible) head.appendChild(cell("th", c));
      thead.replaceChildren(head);
      const stick = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 4;
      const rows = model.get("rows");
      tbody.replaceChildren(
        ...rows.map((row) => {
          const tr = document.createElement("tr");
          const event = row[columns.indexOf("event")] || "";
          tr.dataset.event = event;
          tr.className = `is-${event.split(":")[0]}${event === "error" ? " is-error" : ""}`;
          const wall = row[row.length - 1];
          if (wall) tr.title = new Date(wall).toISOString();
          index.forEach((i, k) => {
            let value = row[i];
            if (visible[k] === "t" && typeof value === "number") value = value.toFixed(3);
            if (visible[k] === "remote" && value) value = String(value).slice(0, 8);
            tr.appendChild(cell("td", value, `col-${visible[k]}`));
          });
          return tr;
        }),
      );
      count.textContent = `${rows.length} shown · ${model.get("total")} in peer.events`;
      if (stick) scroller.scrollTop = scroller.scrollHeight;
    };

    const renderMeta = () => {
      scroller.style.maxHeight = model.get("max_height");
      error.textContent = model.get("error");
      error.hidden = !model.get("error");
    };

    const handlers = [
      ["change:rows change:total change:compact change:columns", renderRows],
      ["change:groups change:known_groups", renderGroups],
      ["change:max_height change:error", renderMeta],
    ];
    for (const [events, fn] of handlers) for (const e of events.split(" ")) model.on(e, fn);
    renderGroups();
    renderRows();
    renderMeta();
    scroller.scrollTop = scroller.scrollHeight;
    return () => {
      for (const [events, fn] of handlers) for (const e of events.split(" ")) model.off(e, fn);
    };
  },
};
