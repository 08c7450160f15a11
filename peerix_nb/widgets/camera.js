// CameraFrames front end (anywidget ESM, no build step): grabs frames of an ipywebrtc media
// stream (a CameraStream: the browser's camera) and sends them to the kernel as JPEG.
//
// Pull, one frame per request: the kernel sends {type: "grab", seq}; the page draws the
// stream's current frame on a canvas, encodes it and answers {type: "frame", seq, width,
// height} with the image as a binary buffer, or {type: "error", seq, message}. Custom messages
// only: ipywidgets' state sync from the page is throttled until the kernel reports "idle",
// which it does not do for messages handled while a cell awaits.
//
// Everything happens in `initialize` (at model creation), so the widget needs no view.

const PREFIX = "IPY_MODEL_";

async function mediaStream(model) {
  // The `camera` trait is a widget reference; ipywebrtc's MediaStream models have
  // captureStream() (a CameraStream calls getUserMedia once and keeps the promise).
  const ref = model.get("camera");
  const id = typeof ref === "string" && ref.startsWith(PREFIX) ? ref.slice(PREFIX.length) : ref;
  const source = await model.widget_manager.get_model(id);
  if (!source || typeof source.captureStream !== "function") {
    throw new Error("the camera widget is not an ipywebrtc media stream");
  }
  return await source.captureStream();
}

function playing(video) {
  return new Promise((resolve, reject) => {
    if (video.readyState >= 2 && video.videoWidth > 0) {
      resolve();
      return;
    }
    video.addEventListener("loadeddata", () => resolve(), { once: true });
    video.addEventListener("error", () => reject(new Error("the camera video failed")), {
      once: true,
    });
  });
}

export default {
  initialize({ model }) {
    let video = null;
    let ready = null; // promise: the video element plays the stream
    const canvas = document.createElement("canvas");
    let closed = false;

    function start() {
      if (ready === null) {
        ready = (async () => {
          video = document.createElement("video");
          video.muted = true;
          video.playsInline = true;
          video.srcObject = await mediaStream(model);
          await video.play();
          await playing(video);
        })();
        ready.catch(() => {
          ready = null; // try again on the next request
        });
      }
      return ready;
    }

    async function grab(msg) {
      const seq = msg.seq;
      try {
        await start();
        if (closed) return;
        const width = video.videoWidth;
        const height = video.videoHeight;
        if (canvas.width !== width || canvas.height !== height) {
          canvas.width = width;
          canvas.height = height;
        }
        canvas.getContext("2d").drawImage(video, 0, 0, width, height);
        const type = `image/${msg.format || "jpeg"}`;
        const blob = await new Promise((resolve) => canvas.toBlob(resolve, type, msg.quality));
        if (!blob) throw new Error(`the browser cannot encode ${type}`);
        const buffer = await blob.arrayBuffer();
        if (!closed) model.send({ type: "frame", seq, width, height }, undefined, [buffer]);
      } catch (error) {
        if (!closed) {
          const message = error && error.name ? `${error.name}: ${error.message}` : String(error);
          model.send({ type: "error", seq, message });
        }
      }
    }

    function onMessage(msg) {
      if (msg && msg.type === "grab") void grab(msg);
    }

    model.on("msg:custom", onMessage);
    return () => {
      closed = true;
      model.off("msg:custom", onMessage);
      if (video !== null) video.srcObject = null; // the camera's tracks belong to ipywebrtc
    };
  },
};
