"""One module per DVC stage; each exposes `main(params)` and is run as `unleet <stage>`."""
