"""Live views in Jupyter: Bokeh charts, tables, ticker cards, controls and status widgets."""
