"""peerix_nb: Peerix-compatible WebRTC rooms for Python notebooks, on aiortc."""
