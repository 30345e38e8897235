"""One thin script per DVC stage: parse params, call the library, write outputs atomically."""
