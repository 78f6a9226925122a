"""What a person sees: the terminal (tables, heatmaps, progress, one-line errors), colour,
GIF/MP4/PNG frames, matplotlib plots and the HTML report."""
