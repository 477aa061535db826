"""What a user files: the comparison report and its plots (``report``, ``comparison``, ``subgroups``,
``table_format``, ``report_plots``), the audit's table (``audit_table``), and the certificate with its verdict
and verification (``certificate``, ``verdict``). Reads the records that training and evaluation wrote; measures
nothing itself."""
