"""Extract: vendor API -> raw DBN chunks committed into the lake."""
