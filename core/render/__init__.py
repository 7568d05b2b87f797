"""Renderers of pfnmap's results for people, beyond the terminal: :mod:`pfnmap.render.html`."""
