"""What the numbers say: significance tests (``stats``), seed averages (``seeds``), the manipulation
check (``manipulation``), the long summary (``summary``), figures (``plots``) and agreement of people
and judges (``agreement``)."""
