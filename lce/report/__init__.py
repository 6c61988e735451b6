"""`lce report`: the warehouse as a static HTML folder to share (no server, no install).

``svg`` draws the figures as inline SVG (no JavaScript, so the page opens from disk anywhere);
``html`` holds the escaped HTML pieces; ``write`` reads the marts (through ``lce.explore``'s
queries, as the app does) and writes ``index.html`` with the unit images beside it.
"""
