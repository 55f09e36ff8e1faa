"""Everything that touches the outside: server, WebRTC, devices, files, CLI."""
