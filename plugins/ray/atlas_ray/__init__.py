"""actatlas-ray: the ``ray`` collection executor (``atlas build ... --executor ray``)."""
