// The anywidget entry object for a widget whose state lives per model.
//
// Per-model state (the peer, its views) lives in one createWidget() per model, found again in
// render() by the model's synced `key` (render gets another proxy of the model, not the same
// object), so two widgets in one page never share state, however anywidget loads the module.

export function perModel(createWidget) {
  const instances = new Map();
  return {
    initialize(ctx) {
      const key = ctx.model.get("key");
      const widget = createWidget();
      instances.set(key, widget);
      const cleanup = widget.initialize(ctx);
      return () => {
        if (instances.get(key) === widget) instances.delete(key);
        cleanup();
      };
    },
    render(ctx) {
      const widget = instances.get(ctx.model.get("key"));
      return widget ? widget.render(ctx) : undefined;
    },
  };
}
