"""What several strategies share: task losses and the relabelling objective (``objectives``), substitute
labels (``substitute_labels``), distillation, diagonal Fisher importances, bounded gradient ascent."""
