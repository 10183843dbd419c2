"""Video stream readers: decode off the event loop, sample, resize once, reconnect forever."""
